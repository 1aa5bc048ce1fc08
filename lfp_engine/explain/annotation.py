"""The human check of explanations (paper appendix G): multiple-choice questions and agreement.

A question shows a feature's top-activating texts and five options: its own explanation, three
explanations of other features, shuffled, and "none of the above". The paper's annotators found
the right one 67.5% and 70% of the time (chance: one in four explanations), agreed with each
other 87.5%, and chose "none" 20% / 22.5%. Questions are built by the `explain` stage; answers
come from the dashboard's quiz into the `annotations` table, which no stage ever replaces.

Saving an answer is the dashboard's only write. It opens the store read-write for one short
transaction; DuckDB allows one writer and, within a process, no read-only connection beside it,
so the write waits briefly for the dashboard's own reads (or an `lfp run`) to let go, then says
the store is busy rather than hang.
"""

from __future__ import annotations

import hashlib
import itertools
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from lfp_engine.run.errors import InputError
from lfp_engine.run.store import RunStore

NONE_OF_THE_ABOVE = "None of the above"
N_EXPLANATIONS = 4
ANNOTATIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS annotations (question_id VARCHAR, annotator VARCHAR, choice INTEGER, "
    "is_correct BOOLEAN, chose_none BOOLEAN, created_at VARCHAR)",
    [],
)


def make_questions(explained: pd.DataFrame, n_questions: int, rng: np.random.Generator) -> pd.DataFrame:
    """Questions from explained features (columns model, layer, dict_size, feature, explanation).

    Options are distinct texts: several features can share one offline explanation, and a
    question whose distractors repeat its answer would have no right answer.
    """
    unique = explained.dropna(subset=["explanation"]).drop_duplicates("explanation").reset_index(drop=True)
    columns = ["question_id", "model", "layer", "dict_size", "feature", "options", "correct_option", "option_features"]
    if len(unique) < N_EXPLANATIONS:
        return pd.DataFrame(columns=columns)
    rows = []
    for i in rng.permutation(len(unique))[:n_questions]:
        others = rng.choice(np.delete(np.arange(len(unique)), i), size=N_EXPLANATIONS - 1, replace=False)
        picked = rng.permutation(np.concatenate([[i], others]))
        options = [unique.loc[j, "explanation"] for j in picked] + [NONE_OF_THE_ABOVE]
        keys = [f"{unique.loc[j, 'model']}/{unique.loc[j, 'layer']}/{unique.loc[j, 'dict_size']}/{unique.loc[j, 'feature']}"
                for j in picked] + [""]
        target = unique.loc[i]
        qid = hashlib.sha256("|".join([keys[int(np.where(picked == i)[0][0])], *options]).encode()).hexdigest()[:12]
        rows.append({"question_id": qid, "model": target["model"], "layer": int(target["layer"]),
                     "dict_size": int(target["dict_size"]), "feature": int(target["feature"]), "options": options,
                     "correct_option": int(np.where(picked == i)[0][0]), "option_features": keys})
    return pd.DataFrame(rows, columns=columns)


MAX_NAME = 80
ANSWER_RETRY_S = 5.0
"""How long saving an answer waits for the store before saying it is busy."""


def annotator_name(text: str) -> str:
    """The name an answer is filed under: control characters dropped, runs of spaces made one."""
    name = " ".join("".join(ch for ch in str(text) if unicodedata.category(ch) != "Cc").split())
    if not name:
        raise InputError("enter your name first: answers are counted per annotator")
    if len(name) > MAX_NAME:
        raise InputError(f"a name of at most {MAX_NAME} characters, please (this one has {len(name)})")
    return name


def record_answer(store: RunStore, question: Mapping[str, Any], annotator: str, choice: int,
                  retry_s: float | None = None) -> dict[str, Any]:
    """Append one answer to `annotations` (the table is created if the run predates it); returns the row."""
    options = list(question["options"])
    if not 0 <= int(choice) < len(options):
        raise InputError(f"choice {choice} is not one of the {len(options)} options")
    row = {"question_id": str(question["question_id"]), "annotator": annotator_name(annotator),
           "choice": int(choice), "is_correct": int(choice) == int(question["correct_option"]),
           "chose_none": options[int(choice)] == NONE_OF_THE_ABOVE,
           "created_at": datetime.now(timezone.utc).isoformat(timespec="microseconds")}
    insert = ("INSERT INTO annotations (question_id, annotator, choice, is_correct, chose_none, created_at) "
              "VALUES (?, ?, ?, ?, ?, ?)", list(row.values()))
    store.write({}, [ANNOTATIONS_DDL, insert], retry_s=ANSWER_RETRY_S if retry_s is None else retry_s)
    return row


def agreement(answers: pd.DataFrame) -> dict[str, float]:
    """accuracy, chance, none_rate and inter-annotator agreement (share of pairs of annotators who
    answered the same question and chose the same option), from `annotations` rows."""
    if answers.empty:
        return {"n_answers": 0, "n_annotators": 0, "accuracy": float("nan"), "chance": 1 / N_EXPLANATIONS,
                "none_rate": float("nan"), "agreement": float("nan"), "n_pairs": 0}
    latest = answers.sort_values("created_at").drop_duplicates(["question_id", "annotator"], keep="last")
    same = pairs = 0
    for _, group in latest.groupby("question_id"):
        for a, b in itertools.combinations(group["choice"].tolist(), 2):
            pairs += 1
            same += a == b
    return {"n_answers": len(latest), "n_annotators": int(latest["annotator"].nunique()),
            "accuracy": float(latest["is_correct"].mean()), "chance": 1 / N_EXPLANATIONS,
            "none_rate": float(latest["chose_none"].mean()),
            "agreement": same / pairs if pairs else float("nan"), "n_pairs": pairs}
