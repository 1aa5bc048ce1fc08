"""Does the tiny world's base model represent polarity in a way a probe can carry to new words?

The implicit reward of a held-out word (issue 11's benchmark, `bench_implicit_reward`) can only
be read by a linear probe fit on other words if the model places positive and negative words on
one side or the other of a common direction before any tuning. This checks that precondition on
the base model alone, so the world's size and pretraining budget can be chosen by it rather than
by the figure the benchmark later gives.

Measure: the base model's MLP outputs at every layer, averaged over each occurrence's sub-tokens
(the probe's unit, `probe/encoding.py`), at occurrences of the world's *ordinary* sentiment words
(planted words are used against or without their lexicon polarity, so they are left out) in the
test-split reviews. A logistic regression on all layers' outputs predicts each occurrence's
lexicon polarity; folds group occurrences by word (5-fold), so every score is on words the
classifier never saw. Reported: occurrence accuracy and word accuracy (a word is right when the
mean predicted probability of its occurrences is on its side), each with a Clopper-Pearson
interval, for all layers together and for each layer alone. The word accuracy is the criterion:
occurrences of one word are not independent, so the occurrence interval is too narrow, and an
occurrence keeps its word's label even where the review negates it ("not bad"), which adds noise
to the occurrence figure that a word's mean absorbs. The regression's strength is fixed (C 0.1 on
standardised features), not tuned, so nothing is chosen on the held-out words.

    PYTHONPATH=. python -m benchmarks.bench_world --world runs/tiny/world [--world ...]
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from lfp_engine.models.architecture import num_layers
from lfp_engine.models.hooks import capture_mlp_outputs
from lfp_engine.models.hub import load_causal_lm, load_tokenizer
from lfp_engine.worlds import CORPUS, GROUND_TRUTH

MAX_PER_WORD = 40
"""Occurrences kept per word, so frequent words do not dominate the fit."""


@dataclass
class Occurrences:
    features: np.ndarray
    """[n, layers * d] mean MLP output over the occurrence's sub-tokens, layer by layer."""
    word: np.ndarray
    positive: np.ndarray


def occurrences(world: Path, seed: int) -> tuple[Occurrences, int]:
    """Every kept occurrence of an ordinary sentiment word in the test reviews, encoded."""
    truth = pd.read_parquet(world / GROUND_TRUTH)
    truth = truth[truth["kind"] == "ordinary"]
    polarity = dict(zip(truth["word"], truth["polarity"] == "positive", strict=True))
    corpus = pd.read_parquet(world / CORPUS)
    texts = corpus.loc[corpus["split"] == "test", "text"].tolist()
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, polarity), key=len, reverse=True)) + r")\b",
                         re.IGNORECASE)
    rng = np.random.default_rng(seed)
    found = [(i, m.group(1).lower(), m.start(), m.end()) for i, t in enumerate(texts) for m in pattern.finditer(t)]
    keep: list[tuple[int, str, int, int]] = []
    for word in sorted(polarity):
        hits = [f for f in found if f[1] == word]
        if len(hits) > MAX_PER_WORD:
            hits = [hits[j] for j in sorted(rng.choice(len(hits), MAX_PER_WORD, replace=False))]
        keep += hits
    model = load_causal_lm(str(world / "base"))
    tokenizer = load_tokenizer(str(world / "base"))
    layers = list(range(num_layers(model)))
    by_text: dict[int, list[tuple[int, int, int]]] = {}
    for row, (i, _, start, end) in enumerate(keep):
        by_text.setdefault(i, []).append((row, start, end))
    features = np.zeros((len(keep), len(layers) * model.config.hidden_size), dtype=np.float32)
    bos = tokenizer.bos_token_id
    with torch.no_grad():
        for i, spans in tqdm(by_text.items(), desc="encode occurrences", unit="review", mininterval=1):
            enc = tokenizer(texts[i], add_special_tokens=False, return_offsets_mapping=True)
            ids = ([bos] if bos is not None else []) + enc["input_ids"]
            shift = 1 if bos is not None else 0
            with capture_mlp_outputs(model, layers) as captured:
                model(torch.tensor([ids]))
            out = torch.cat([captured[layer][0] for layer in layers], dim=-1).numpy()
            for row, start, end in spans:
                positions = [k + shift for k, (a, b) in enumerate(enc["offset_mapping"]) if a < end and b > start]
                features[row] = out[positions].mean(axis=0)
    words = np.array([k[1] for k in keep])
    return Occurrences(features, words, np.array([polarity[w] for w in words])), len(layers)


def interval(successes: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(successes, n).proportion_ci(0.95, method="exact")
    return ci.low, ci.high


def decode(data: Occurrences, columns: slice) -> dict[str, float]:
    """Word-grouped 5-fold accuracy of a logistic regression on the given feature columns."""
    prob = np.zeros(len(data.word))
    for train, test in GroupKFold(n_splits=5).split(data.features, data.positive, groups=data.word):
        fit = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        fit.fit(data.features[train][:, columns], data.positive[train])
        prob[test] = fit.predict_proba(data.features[test][:, columns])[:, 1]
    right = (prob > 0.5) == data.positive
    frame = pd.DataFrame({"word": data.word, "prob": prob, "positive": data.positive})
    per_word = frame.groupby("word").agg(prob=("prob", "mean"), positive=("positive", "first"))
    word_right = (per_word["prob"] > 0.5) == per_word["positive"]
    lo, hi = interval(int(right.sum()), len(right))
    wlo, whi = interval(int(word_right.sum()), len(word_right))
    return {"occurrence_accuracy": right.mean(), "occ_lo": lo, "occ_hi": hi,
            "word_accuracy": word_right.mean(), "word_lo": wlo, "word_hi": whi, "n_words": len(word_right),
            "n_occurrences": len(right)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=Path, action="append", required=True, help="a run's world folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-word sample of occurrences")
    args = parser.parse_args()
    rows = []
    for world in args.world:
        data, n_layers = occurrences(world, args.seed)
        d = data.features.shape[1] // n_layers
        rows.append({"world": str(world), "layers": "all", **decode(data, slice(None))})
        for layer in range(n_layers):
            rows.append({"world": str(world), "layers": str(layer), **decode(data, slice(layer * d, (layer + 1) * d))})
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
