"""The probe and its baselines, fit and measured on the same words (paper 3.3, 4.1).

The probe ('sae') reads the tuned model's SAE codes. Every other variant changes one thing, so a
difference from it says what that thing contributes:
- 'raw_mlp': the tuned model's raw MLP outputs, no SAE (from the same forward passes);
- 'base_model': the *base* model through its own SAEs (did tuning create the pattern?);
- 'xavier': an untrained probe with Xavier-uniform weights (the paper's baseline);
- 'shuffled': the probe refit to shuffled targets (what fitting alone can find).
All are measured on the test split, words (or texts) no probe was fit on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfp_engine.probe.dataset import ProbeDataset, build_dataset
from lfp_engine.probe.encoding import CodeLayout, Encoder, TokenizedText, tokenize
from lfp_engine.probe.linear import LinearProbe, baselines, fit
from lfp_engine.probe.measures import measure
from lfp_engine.probe.triples import ELEMENTS
from lfp_engine.probe.zero_point import ContextTokens

MODEL_OF_VARIANT = {"sae": "tuned", "base_model": "base"}
"""The variants read through a model's own SAEs, and whose model that is."""


def tokenized_elements(triples: pd.DataFrame, kind: str, tokenizer,
                       max_tokens: int) -> dict[str, list[TokenizedText]]:
    """Each element's texts, tokenized; word triples keep the substituted word's character span."""
    word = kind == "word"
    return {e: tokenize(tokenizer, triples[f"text_{e}"].tolist(),
                        list(zip(triples[f"start_{e}"].astype(int), triples[f"end_{e}"].astype(int), strict=True))
                        if word else None, max_tokens)
            for e in ELEMENTS}


def encode_variants(encoders: Mapping[str, Encoder], texts: Mapping[str, list[TokenizedText]],
                    triples: pd.DataFrame, kind: str, context: ContextTokens | None) -> dict[str, ProbeDataset]:
    """The dataset of every variant that needs a forward pass: 'sae' and 'raw_mlp' from the tuned
    model's encoder (one pass gives both), 'base_model' from the base model's; word triples also
    encode the `context` tokens of their zero point, at the same positions for every model."""
    datasets: dict[str, ProbeDataset] = {}
    for variant, encoder in encoders.items():
        model = MODEL_OF_VARIANT[variant]
        tuned = variant == "sae"
        encoded = {e: encoder.representations(texts[e], desc=f"encode {model} {e}", with_raw=tuned) for e in ELEMENTS}
        if context is not None:
            encoded["context"] = encoder.position_codes(context.texts, desc=f"encode {model} shared tokens",
                                                        with_raw=tuned)
        if tuned:
            datasets["raw_mlp"] = build_dataset({e: raw for e, (_, raw) in encoded.items()}, triples, kind, context)
            encoded = {e: codes for e, (codes, _) in encoded.items()}
        datasets[variant] = build_dataset(encoded, triples, kind, context)
    return datasets


@dataclass
class ProbeFits:
    datasets: dict[str, ProbeDataset]
    probes: dict[str, LinearProbe]
    """The fitted probe of each dataset's variant ('sae', 'raw_mlp', 'base_model')."""
    predictions: dict[str, np.ndarray]
    metrics: pd.DataFrame
    """Rows of `probe_metrics` for every variant, baselines included."""

    @property
    def main(self) -> ProbeDataset:
        return self.datasets["sae"]

    def weights_table(self, layout: CodeLayout) -> pd.DataFrame:
        """`probe_weights`: the probe's weight on each tuned-model feature it reads."""
        keys = [layout.feature_of(c) for c in range(layout.total)]
        return pd.DataFrame(keys, columns=["layer", "dict_size", "feature"]).assign(weight=self.probes["sae"].weights)

    def predictions_table(self) -> pd.DataFrame:
        """`probe_predictions`: the probe's prediction at every triple's substituted word, for each of
        its elements (the shared tokens of its zero point are not stored)."""
        main = self.main
        rows = main.at_word
        return pd.DataFrame({"triple_id": main.triple_id[rows], "element": main.element[rows], "split": main.split[rows],
                             "word": main.word[rows], "lexicon_value": main.lexicon_value[rows],
                             "target": main.target[rows], "prediction": self.predictions["sae"][rows]})


def fit_variants(datasets: Mapping[str, ProbeDataset], folds: int, n_bootstrap: int, seed: int,
                 rng: np.random.Generator) -> ProbeFits:
    """Fit every variant's probe on its train rows, and the baselines on the probe's own data;
    measure all of them."""
    probes = {variant: fit(data, folds) for variant, data in datasets.items()}
    rows: list[dict] = []
    predictions = {}
    for variant, data in datasets.items():
        predictions[variant] = probes[variant].predict(data.X)
        rows += measure(variant, data, predictions[variant], n_bootstrap, seed)
    main = datasets["sae"]
    for name, probe in baselines(main, rng, folds).items():
        rows += measure(name, main, probe.predict(main.X), n_bootstrap, seed)
    return ProbeFits(dict(datasets), probes, predictions, pd.DataFrame(rows))
