"""The contrastive triples' table (paper 3.3): its columns, and rows turned into it.

A triple is one text in three versions, positive, neutral and negative (`ELEMENTS`). Word triples
(the reward tasks) record the substituted words, their lexicon values and character spans; text
triples (the preference tasks) only the three texts. `word_triples.py` and `text_triples.py` make
them, `contrastive.py` picks which for a run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ELEMENTS = ("positive", "neutral", "negative")
"""The three versions of a text, in the order every triple lists them."""

TRIPLE_COLUMNS = [
    "triple_id", "kind", "split", "source_id", "generator", "role", "original_word",
    "word_positive", "word_neutral", "word_negative", "value_positive", "value_negative",
    "text_positive", "text_neutral", "text_negative",
    "start_positive", "end_positive", "start_neutral", "end_neutral", "start_negative", "end_negative",
    "grade",
]



def triple_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=TRIPLE_COLUMNS)
    frame["triple_id"] = np.arange(len(frame))
    for column in ("start_positive", "end_positive", "start_neutral", "end_neutral", "start_negative",
                   "end_negative", "grade"):
        frame[column] = frame[column].astype("Int64")
    for column in ("value_positive", "value_negative"):
        frame[column] = frame[column].astype("Float64")
    return frame
