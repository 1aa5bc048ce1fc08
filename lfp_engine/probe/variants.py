"""The probe and its baselines, fit and measured on the same words (paper 3.3, 4.1).

The probe ('sae') reads the tuned model's SAE codes. Every other variant changes one thing, so a
difference from it says what that thing contributes:
- 'raw_mlp': the tuned model's raw MLP outputs, no SAE (from the same forward passes);
- 'base_model': the *base* model through its own SAEs (did tuning create the pattern?);
- 'xavier': an untrained probe with Xavier-uniform weights (the paper's baseline);
- 'shuffled': the probe refit to shuffled targets (what fitting alone can find);
- 'polarity_only': no probe, each word valued at its polarity's mean training value (`nulls.py`).
All are measured on the test split, words (or texts) no probe was fit on, and each readout of a
model's codes against that model's permutation null (`nulls.py`); 'tuned_minus_base' rows hold
the paired difference between the probe on the tuned and on the base model (`agreement.py`).
Every word also gets a cross-fitted value per model (`crossfit.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lfp_engine.probe.agreement import (DIFFERENCE, accuracy_difference_row, agreement_rows, difference_rows,
                                        measure_agreement)
from lfp_engine.probe.crossfit import (NULL_ELEMENT, CrossFit, cross_validated_word_error, crossfit, null_crossfit,
                                      paired_difference_rows, prediction_rows, split_halves, with_word_error,
                                      word_error, word_value_table)
from lfp_engine.probe.dataset import ProbeDataset, build_dataset, on_one_scale
from lfp_engine.probe.encoding import CodeLayout, Encoder, TokenizedText, tokenize
from lfp_engine.probe.linear import LinearProbe, baselines, fit, fit_sharing_strength
from lfp_engine.probe.measures import MetricRow, measure, metrics_frame, sign_agreement
from lfp_engine.probe.nulls import permutation_null, polarity_only_values
from lfp_engine.probe.settings import ProbeSettings
from lfp_engine.probe.triples import ELEMENTS
from lfp_engine.probe.zero_point import ContextTokens
from lfp_engine.probe.words import WordSet, stratified_resamples
from lfp_engine.statistics import percentile_interval
from lfp_engine.run.errors import InputError

MODEL_OF_VARIANT = {"sae": "tuned", "base_model": "base"}
"""The variants read through a model's own SAEs, and whose model that is."""
AMPLITUDE = "tuned_over_base"
"""The variant of the rows that compare the two models' amplitudes (`amplitude_rows`)."""


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
    encode the `context` tokens of their zero point, at the same positions for every model, in the
    neutral element's own pass (they are tokens of the same ids, `zero_point.context_tokens`)."""
    if context is not None and any(c.ids != t.ids for c, t in zip(context.texts, texts["neutral"], strict=True)):
        raise InputError("the zero point's shared tokens must be read from the neutral elements' own token ids")
    datasets: dict[str, ProbeDataset] = {}
    for variant, encoder in encoders.items():
        model = MODEL_OF_VARIANT[variant]
        tuned = variant == "sae"
        read = [e for e in ELEMENTS if context is None or e != "neutral"]
        encoded = {e: encoder.representations(texts[e], desc=f"encode {model} {e}", with_raw=tuned) for e in read}
        if context is not None:
            neutral, shared = encoder.representations_with_positions(
                texts["neutral"], [c.positions for c in context.texts], desc=f"encode {model} neutral", with_raw=tuned)
            encoded |= {"neutral": neutral, "context": shared}
        if tuned:
            datasets["raw_mlp"] = build_dataset({e: raw for e, (_, raw) in encoded.items()}, triples, kind, context)
            encoded = {e: codes for e, (codes, _) in encoded.items()}
        datasets[variant] = build_dataset(encoded, triples, kind, context)
    return datasets


READS = {"sae": "sae", "xavier": "sae", "shuffled": "sae", "raw_mlp": "raw_mlp", "base_model": "base_model"}
"""Whose inputs each readout reads, and so whose permutation null its p-values are against."""


@dataclass
class ProbeFits:
    datasets: dict[str, ProbeDataset]
    probes: dict[str, LinearProbe]
    """The fitted probe of each dataset's variant ('sae', 'raw_mlp', 'base_model')."""
    predictions: dict[str, np.ndarray]
    """Every readout's prediction on its dataset's rows, baselines included."""
    metrics: pd.DataFrame
    """Rows of `probe_metrics` for every variant, baselines, controls and differences included."""
    word_values: pd.DataFrame | None = None
    """Word triples: cross-fitted per-word values of the tuned and the base model (`word_values`)."""
    null_word_values: pd.DataFrame | None = None
    """Word triples: the neutral words read the same way, the report's calibration null (`crossfit.py`)."""

    @property
    def main(self) -> ProbeDataset:
        return self.datasets["sae"]

    def on_codes(self, variant: str) -> LinearProbe:
        """A variant's probe as it reads the model's raw codes (what is saved and served)."""
        return self.probes[variant].on_codes(self.datasets[variant].code_scale)

    def weights_table(self, layout: CodeLayout) -> pd.DataFrame:
        """`probe_weights`: the probe's weight on each tuned-model feature it reads (raw codes)."""
        keys = [layout.feature_of(c) for c in range(layout.total)]
        return pd.DataFrame(keys, columns=["layer", "dict_size", "feature"]).assign(weight=self.on_codes("sae").weights)

    def predictions_table(self) -> pd.DataFrame:
        """`probe_predictions`: the probe's prediction at every triple's substituted word, for each of
        its elements (the shared tokens of its zero point are not stored)."""
        main = self.main
        rows = main.at_word
        return pd.DataFrame({"triple_id": main.triple_id[rows], "element": main.element[rows], "split": main.split[rows],
                             "word": main.word[rows], "lexicon_value": main.lexicon_value[rows],
                             "target": main.target[rows], "prediction": self.predictions["sae"][rows]})


def word_agreement(datasets: Mapping[str, ProbeDataset], probes: Mapping[str, LinearProbe],
                   predictions: Mapping[str, np.ndarray], settings: ProbeSettings, seed: int) -> list[MetricRow]:
    """Kendall-tau rows of every readout on the test words, the polarity-only baseline, and tuned
    minus base; one set of bootstrap resamples for all, one permutation null per model's inputs."""
    main = datasets["sae"]
    if any(not np.array_equal(data.word, main.word) for data in datasets.values()):
        raise InputError("the probe's variants must be fit on the same rows (words) to be compared word by word")
    words = WordSet.of(main, main.test)
    resamples = stratified_resamples(words.positive, settings.n_bootstrap, np.random.default_rng([seed, 1]))
    nulls = {variant: permutation_null(data, probes[variant].alpha, words, settings.n_permutations,
                                       np.random.default_rng([seed, 2]))
             for variant, data in datasets.items() if settings.n_permutations > 0}
    found = {name: measure_agreement(name, words, words.values(prediction), resamples, nulls.get(READS[name]))
             for name, prediction in predictions.items()}
    # No interval for polarity alone: its tau is fixed by the words' polarity counts and lexicon ties.
    found["polarity_only"] = measure_agreement("polarity_only", words, polarity_only_values(main, words),
                                               resamples[:0], None, random_ties=True)
    rows = [row for agreement in found.values() for row in agreement_rows(agreement)]
    if "base_model" in found:
        rows += difference_rows(found["sae"], found["base_model"])
    return rows + polarity_only_rows(main, words)


def polarity_only_rows(data: ProbeDataset, words: WordSet) -> list[MetricRow]:
    """Sign agreement and error of the polarity-only baseline on the test words."""
    values = polarity_only_values(data, words)
    return [MetricRow("polarity_only", "test", "sign_agreement", sign_agreement(words.truth, values), len(values)),
            MetricRow("polarity_only", "test", "mae", float(np.abs(values - words.truth).mean()), len(values))]


def cross_fitted_values(datasets: Mapping[str, ProbeDataset], probes: Mapping[str, LinearProbe],
                        settings: ProbeSettings, seed: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """`word_values`: every word of the tuned and the base model, each read by a probe that never saw it,
    with the uncertainty of its contexts, of the fit and of the reading of a word (`crossfit.py`), and
    (with both models) their paired difference, model 'tuned_minus_base'; and `null_word_values`, the
    neutral words read the same way (their word error estimated on the other half of them)."""
    rng = np.random.default_rng([seed, 3])
    paired = {MODEL_OF_VARIANT[v]: v for v in datasets if v in MODEL_OF_VARIANT}
    fits = {model: crossfit(datasets[v], probes[v].alpha, settings.cv_folds) for model, v in paired.items()}
    values = _value_tables(datasets, paired, fits, None, settings.n_bootstrap, rng)
    nulls = {model: null_crossfit(datasets[v], probes[v].alpha, settings.cv_folds) for model, v in paired.items()}
    if any(null is None for null in nulls.values()):
        return values, None
    null_values = _value_tables(datasets, paired, nulls, NULL_ELEMENT, settings.n_bootstrap, rng)
    halves = split_halves(null_values["word"].unique(), np.random.default_rng([seed, 6]))
    errors = {model: word_error(group) for model, group in null_values.groupby("model")}
    values = pd.concat([with_word_error(group, errors[model]) for model, group in values.groupby("model", sort=False)],
                       ignore_index=True)
    return values, cross_validated_word_error(null_values, halves)


def _value_tables(datasets: Mapping[str, ProbeDataset], paired: Mapping[str, str], fits: Mapping[str, CrossFit],
                  element: str | None, n_bootstrap: int, rng: np.random.Generator) -> pd.DataFrame:
    """Each model's value table from its cross-fit, and their paired difference (rows and jackknife)."""
    rows = {model: prediction_rows(datasets[paired[model]], fit.predictions, element) for model, fit in fits.items()}
    variances = {model: _by_word(fit, fit.fit_variance()) for model, fit in fits.items()}
    if {"tuned", "base"} <= set(rows):
        rows[DIFFERENCE] = paired_difference_rows(rows["tuned"], rows["base"])
        fit = fits["tuned"]
        variances[DIFFERENCE] = _by_word(fit, fit.fit_variance(fit.influence - fits["base"].influence))
    return pd.concat([word_value_table(frame, model, variances[model], n_bootstrap, rng)
                      for model, frame in rows.items()], ignore_index=True)


def _by_word(fit: CrossFit, variance: np.ndarray) -> pd.Series:
    return pd.Series(variance, index=fit.words)


def amplitude_rows(datasets: Mapping[str, ProbeDataset], n_bootstrap: int, rng: np.random.Generator) -> list[MetricRow]:
    """How much larger the tuned model's activation deltas are than the base model's on the same
    training triples (mean |delta| per word, the ratio of their means over words, a bootstrap over
    words), and the ratio of the two models' code scales: the changes of amplitude that each model's
    own gain and scale take out of the comparison of values (`dataset.py`)."""
    if not {"sae", "base_model"} <= set(datasets):
        return []
    tuned, base = datasets["sae"], datasets["base_model"]
    rows = tuned.train
    words = pd.Series(tuned.word[rows].astype(str))
    size = {name: pd.Series(np.abs(data.target[rows]) / data.scale).groupby(words.to_numpy()).mean()
            for name, data in (("tuned", tuned), ("base", base))}
    t, b = size["tuned"].to_numpy(), size["base"].to_numpy()
    picks = rng.integers(0, len(t), size=(n_bootstrap, len(t)))
    low, high = percentile_interval(t[picks].mean(axis=1) / b[picks].mean(axis=1))
    return [MetricRow(AMPLITUDE, "train", "delta_amplitude_ratio", float(t.mean() / b.mean()), len(t), ci_low=low,
                      ci_high=high),
            MetricRow(AMPLITUDE, "train", "code_scale_ratio", tuned.code_scale / base.code_scale, int(rows.sum()))]


def fit_variants(datasets: Mapping[str, ProbeDataset], settings: ProbeSettings, seed: int,
                 rng: np.random.Generator) -> ProbeFits:
    """Fit every variant's probe on its train rows (the tuned and the base model's at one shared
    strength, `linear.fit_sharing_strength`), and the baselines on the probe's own data; measure all
    of them against their controls. Each model's inputs are first put on its own scale (`dataset.on_one_scale`)."""
    datasets = {variant: on_one_scale(data) for variant, data in datasets.items()}
    probes = {variant: fit(data, settings.cv_folds) for variant, data in datasets.items()
              if variant not in MODEL_OF_VARIANT}
    paired = [variant for variant in MODEL_OF_VARIANT if variant in datasets]
    probes |= dict(zip(paired, fit_sharing_strength([datasets[v] for v in paired], settings.cv_folds), strict=True))
    main = datasets["sae"]
    readouts = {**probes, **baselines(main, rng, settings.cv_folds)}
    predictions = {name: probe.predict(datasets.get(name, main).X) for name, probe in readouts.items()}
    rows = [row for name, prediction in predictions.items()
            for row in measure(name, datasets.get(name, main), prediction)]
    word_values = null_values = None
    if main.kind == "word":
        rows += word_agreement(datasets, probes, predictions, settings, seed)
        rows += amplitude_rows(datasets, settings.n_bootstrap, np.random.default_rng([seed, 5]))
        word_values, null_values = cross_fitted_values(datasets, probes, settings, seed)
    elif "base_model" in datasets:
        test = main.test
        correct = {v: (predictions[v][test] > 0) == (datasets[v].target[test] == 1) for v in ("sae", "base_model")}
        rows.append(accuracy_difference_row(correct["sae"], correct["base_model"], main.triple_id[test],
                                            settings.n_bootstrap, np.random.default_rng([seed, 1])))
    return ProbeFits(dict(datasets), probes, predictions, metrics_frame(rows), word_values, null_values)
