"""The human check of explanations (paper appendix G): multiple-choice questions and agreement.

A question shows a feature's top-activating texts and five options: its own explanation, three
explanations of other features, shuffled, and "none of the above". The paper's annotators found
the right one 67.5% and 70% of the time (chance: one in four explanations), agreed with each
other 87.5%, and chose "none" 20% / 22.5%. Questions are built by the `explain` stage; answers
come from the dashboard's quiz into the `annotations` table, which no stage ever replaces.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pandas as pd

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
