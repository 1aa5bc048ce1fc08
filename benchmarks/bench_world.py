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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lfp_engine.models.architecture import num_layers
from lfp_engine.models.hub import load_causal_lm, load_tokenizer
from lfp_engine.probe.encoding import Encoder, tokenize
from lfp_engine.statistics import proportion
from lfp_engine.tuning.lexicon import iter_word_spans
from lfp_engine.worlds import CORPUS, GROUND_TRUTH

MAX_PER_WORD = 40
"""Occurrences kept per word, so frequent words do not dominate the fit."""


@dataclass
class Occurrences:
    features: np.ndarray
    """[n, layers * d] mean MLP output over the occurrence's sub-tokens, layer by layer."""
    word: np.ndarray
    positive: np.ndarray
    n_layers: int


def occurrences(world: Path, seed: int) -> Occurrences:
    """Up to `MAX_PER_WORD` occurrences (seeded sample) of each ordinary sentiment word in the test
    reviews, found as the reward finds words (spaCy tokens) and encoded as the probe encodes them
    (`probe.encoding`: the text up to the word, the BOS separator first, the mean raw MLP output
    over the word's sub-tokens)."""
    truth = pd.read_parquet(world / GROUND_TRUTH)
    truth = truth[truth["kind"] == "ordinary"]
    positive = dict(zip(truth["word"], truth["polarity"] == "positive", strict=True))
    corpus = pd.read_parquet(world / CORPUS)
    texts = corpus.loc[corpus["split"] == "test", "text"].tolist()
    by_word: dict[str, list[tuple[int, int, int]]] = {}
    for i, spans in enumerate(iter_word_spans(texts)):
        for word, start, end in spans:
            if word in positive:
                by_word.setdefault(word, []).append((i, start, end))
    rng = np.random.default_rng(seed)
    keep = []
    for word in sorted(by_word):
        hits = by_word[word]
        if len(hits) > MAX_PER_WORD:
            hits = [hits[j] for j in sorted(rng.choice(len(hits), MAX_PER_WORD, replace=False))]
        keep += [(word, *hit) for hit in hits]
    model = load_causal_lm(str(world / "base"))
    tokenizer = load_tokenizer(str(world / "base"))
    max_tokens = model.config.max_position_embeddings - 1  # one place for the BOS separator
    layers = list(range(num_layers(model)))
    encoder = Encoder(model, tokenizer, layers, None, tokenizer.bos_token_id, max_tokens)
    tokenized = tokenize(tokenizer, [texts[i] for _, i, _, _ in keep], [(a, b) for _, _, a, b in keep], max_tokens)
    words = np.array([word for word, *_ in keep])
    return Occurrences(encoder.representations(tokenized, desc="encode occurrences"), words,
                       np.array([positive[w] for w in words]), len(layers))


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
    occurrence, lo, hi = proportion(int(right.sum()), len(right))
    word, wlo, whi = proportion(int(word_right.sum()), len(word_right))
    return {"occurrence_accuracy": occurrence, "occ_lo": lo, "occ_hi": hi,
            "word_accuracy": word, "word_lo": wlo, "word_hi": whi, "n_words": len(word_right),
            "n_occurrences": len(right)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=Path, action="append", required=True, help="a run's world folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-word sample of occurrences")
    args = parser.parse_args()
    rows = []
    for world in args.world:
        data = occurrences(world, args.seed)
        n_layers = data.n_layers
        d = data.features.shape[1] // n_layers
        rows.append({"world": str(world), "layers": "all", **decode(data, slice(None))})
        for layer in range(n_layers):
            rows.append({"world": str(world), "layers": str(layer), **decode(data, slice(layer * d, (layer + 1) * d))})
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
