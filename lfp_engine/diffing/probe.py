"""The paper's probe (sections 3.3, 4.1), fit on crosscoder codes instead of the tuned model's SAE codes.

The same triples, the same A(x) (mean code over the substituted word's tokens, or over the text),
the same activation deltas, fit and measures (`probe/dataset.py`, `probe/linear.py`, `probe/measures.py`); only the
code changes: A(x) is the concatenation over the chosen layers of the crosscoder's codes, which read
the base and the tuned model on the same text. Its weight on a latent says how much the implicit
reward the probe recovers leans on that latent, the second of the crosscoder's links to the reward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from lfp_engine.diffing.crosscoder import Crosscoder
from lfp_engine.diffing.inputs import DiffingInputs
from lfp_engine.probe.agreement import agreement_rows, measure_agreement
from lfp_engine.probe.dataset import build_dataset
from lfp_engine.probe.encoding import CodeLayout, Encoder, TokenizedText
from lfp_engine.probe.linear import LinearProbe, fit
from lfp_engine.probe.measures import measure, metrics_frame
from lfp_engine.probe.settings import ProbeSettings
from lfp_engine.probe.triples import ELEMENTS
from lfp_engine.probe.variants import tokenized_elements
from lfp_engine.probe.words import WordSet, stratified_resamples
from lfp_engine.probe.zero_point import ContextTokens
from lfp_engine.run.seeding import derive_seed
from lfp_engine.sae.activations import mlp_outputs, pad_batch

VARIANT = "crosscoder"


class CrosscoderEncoder(Encoder):
    """A(x) from both models through the crosscoders of the chosen layers (one code per latent)."""

    def __init__(self, tuned: nn.Module, base: nn.Module, tokenizer, crosscoders: Mapping[int, Crosscoder],
                 bos_token_id: int | None, max_tokens: int, batch_size: int = 32):
        super().__init__(tuned, tokenizer, sorted(crosscoders), None, bos_token_id, max_tokens, batch_size)
        self.base = base
        self.crosscoders = dict(crosscoders)
        self.layout = CodeLayout(tuple(self.layers), tuple(crosscoders[layer].module.d_sae for layer in self.layers))

    @torch.inference_mode()
    def _codes(self, batch: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, T, D] crosscoder codes, [B, T, L*2d] the paired raw outputs), BOS column dropped."""
        ids, attention, _ = pad_batch(batch, self.tokenizer.pad_token_id, self.bos_token_id, self.device)
        base = mlp_outputs(self.base, self.layers, ids, attention)
        tuned = mlp_outputs(self.model, self.layers, ids, attention)
        raw = torch.cat([torch.cat([base[layer].float(), tuned[layer].float()], dim=-1) for layer in self.layers],
                        dim=-1)
        codes = torch.cat([self.crosscoders[layer].encode_pair(base[layer].float(), tuned[layer].float())
                           for layer in self.layers], dim=-1)
        offset = 0 if self.bos_token_id is None else 1
        return codes[:, offset:], raw[:, offset:]


@dataclass
class CrosscoderProbe:
    probe: LinearProbe
    metrics: pd.DataFrame
    """Rows like `probe_metrics`, variant 'crosscoder'."""
    weights: pd.DataFrame
    """layer, feature, probe_weight, probe_weight_rank (1 = the largest |weight| over all inputs)."""
    n_triples: int


def sample_triples(triples: pd.DataFrame, limit: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most `limit` triples (0: all), drawn without replacement and kept in their order."""
    if limit == 0 or len(triples) <= limit:
        return triples
    return triples.iloc[np.sort(rng.choice(len(triples), size=limit, replace=False))].reset_index(drop=True)


def fit_crosscoder_probe(encoder: CrosscoderEncoder, texts: Mapping[str, list[TokenizedText]], triples: pd.DataFrame,
                         kind: str, folds: int, n_bootstrap: int, seed: int) -> CrosscoderProbe:
    """Encode the triples' elements through the crosscoders, fit the probe as the paper's is fit, and
    measure it on the held-out words (or texts) the same way."""
    encoded = {e: encoder.representations(texts[e], desc=f"encode crosscoder {e}") for e in ELEMENTS}
    # Read at substituted words only (never token by token), so the neutral word alone anchors it.
    data = build_dataset(encoded, triples, kind, ContextTokens.none())
    # Latents silent on every training row get weight 0 from either fit whatever else happens (their
    # centred column is zero), so they are left out of the fit and given 0: the same probe, fit faster.
    live = data.X[data.train].any(axis=0)
    fitted = fit(dataclasses.replace(data, X=data.X[:, live]), folds)
    weights = np.zeros(data.X.shape[1])
    weights[live] = fitted.weights
    probe = dataclasses.replace(fitted, weights=weights)
    prediction = probe.predict(data.X)
    rows = measure(VARIANT, data, prediction)
    if data.kind == "word":
        # The test words' taus with the probe stage's bootstrap (resampled within polarity), no null:
        # the page sets them beside the 'sae' probe's, which carries the permutation p-values.
        words = WordSet.of(data, data.test)
        resamples = stratified_resamples(words.positive, n_bootstrap, np.random.default_rng([seed, 1]))
        rows += agreement_rows(measure_agreement(VARIANT, words, words.values(prediction), resamples, None))
    metrics = metrics_frame(rows)
    layout = encoder.layout
    keys = [layout.feature_of(c) for c in range(layout.total)]
    weights = pd.DataFrame({"layer": [k[0] for k in keys], "feature": [k[2] for k in keys],
                            "probe_weight": probe.weights})
    weights["probe_weight_rank"] = weights["probe_weight"].abs().rank(ascending=False, method="min").astype(int)
    return CrosscoderProbe(probe, metrics, weights, len(triples))


def probe_on_codes(inputs: DiffingInputs, triples: pd.DataFrame, kind: str, max_tokens: int,
                   settings: ProbeSettings) -> CrosscoderProbe:
    """The probe on crosscoder codes over a seeded sample of at most `crosscoder.max_probe_triples` of
    the contrastive `triples` (of `kind`, texts cut to `max_tokens` as the activations were), fit and
    measured with the probe stage's settings."""
    triples = sample_triples(triples, inputs.settings.max_probe_triples,
                             np.random.default_rng(derive_seed(inputs.seed, "probe triples")))
    encoder = CrosscoderEncoder(inputs.models["tuned"], inputs.models["base"], inputs.tokenizer, inputs.by_layer,
                                inputs.evaluation.info.bos_token_id, max_tokens, settings.batch_size)
    return fit_crosscoder_probe(encoder, tokenized_elements(triples, kind, inputs.tokenizer, max_tokens), triples, kind,
                                settings.cv_folds, settings.n_bootstrap, inputs.seed)
