"""How optimistic is a permutation null that keeps the probe's strength? Measured once on a run.

The probe stage's permutation null refits the probe to shuffled targets at the strength the real
targets' cross-validation chose (`lfp_engine.probe.nulls.permutation_null`). Choosing it again for
each shuffle (`rechosen_null`, the probe's own cross-validation on the shuffled targets) is the
honest null; this compares the two on a finished run's own data, the same shuffles for both:

    PYTHONPATH=. python -m benchmarks.bench_null_strength --run runs/tiny [--permutations 1000]

It encodes the run's triples as the probe stage does (its `encoders` and `encode_variants`), fits
as `fit_variants` does, and prints, for the tuned and the base model's probe on the held-out words,
each within-polarity and pooled Kendall tau with its p-value and the null's 95th percentile under
both nulls. A markdown table for docs/results.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lfp_engine.models.hub import resolve_device
from lfp_engine.probe.dataset import on_one_scale
from lfp_engine.probe.kendall import word_taus
from lfp_engine.probe.linear import fit_sharing_strength
from lfp_engine.probe.nulls import permutation_null, rechosen_null
from lfp_engine.probe.variants import MODEL_OF_VARIANT, encode_variants, tokenized_elements
from lfp_engine.probe.words import WordSet
from lfp_engine.probe.zero_point import context_tokens
from lfp_engine.run.config import RunConfig, config_from_dict
from lfp_engine.run.manifest import read_config, read_manifest
from lfp_engine.run.overrides import known_settings
from lfp_engine.run.seeding import derive_seed
from lfp_engine.run.store import RunStore
from lfp_engine.sae.activations import ActivationSet
from precompute.outputs import ActivationsOutputs, ContrastiveOutputs, DivergenceOutputs
from precompute.stage import StageContext
from precompute.stages.probe import encoders
from precompute.models import load_tokenizer_of

MEASURES = {"within": "test_within", "pooled": "test"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/tiny"))
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    store = RunStore(args.run)
    config = config_from_dict(known_settings(read_config(store)[1], RunConfig))
    seed = derive_seed(config.seed, "probe")
    ctx = StageContext(paths=store.paths, store=store, config=config, seed=seed,
                       device=resolve_device(args.device), manifest=read_manifest(store))
    p = config.probe
    triples = store.read("triples", order_by="triple_id")
    kind = ctx.outputs_of(ContrastiveOutputs).kind
    layers = sorted(ctx.outputs_of(DivergenceOutputs).layers)
    bos = ActivationSet(ctx.paths.activations / "train").info.bos_token_id
    max_tokens = ctx.outputs_of(ActivationsOutputs).max_tokens_per_text
    tokenizer = load_tokenizer_of(ctx)
    context = context_tokens(triples, tokenizer, max_tokens, set(store.read("contrastive_words")["word"]),
                             p.neutral_tokens_per_triple, np.random.default_rng([seed, 4]))
    datasets = encode_variants(encoders(ctx, layers, bos, max_tokens),
                               tokenized_elements(triples, kind, tokenizer, max_tokens), triples, kind, context)
    paired = {v: on_one_scale(datasets[v]) for v in MODEL_OF_VARIANT if v in datasets}
    probes = dict(zip(paired, fit_sharing_strength(list(paired.values()), p.cv_folds), strict=True))
    print("| model | measure | tau | p, strength kept | p, strength chosen again | null 95th percentile, kept | "
          "chosen again |\n|---|---|---|---|---|---|---|")
    for variant, data in paired.items():
        words = WordSet.of(data, data.test)
        observed = word_taus(words.truth, words.values(probes[variant].predict(data.X)), words.positive)
        nulls = [make(data, *args_) for make, args_ in (
            (permutation_null, (probes[variant].alpha, words, args.permutations, np.random.default_rng([seed, 2]))),
            (rechosen_null, (words, args.permutations, np.random.default_rng([seed, 2]), p.cv_folds)))]
        for measure in MEASURES:
            value = float(observed[measure][0])
            print(f"| {MODEL_OF_VARIANT[variant]} | {measure} | {value:.3f} | {nulls[0].p_value(measure, value):.3f} | "
                  f"{nulls[1].p_value(measure, value):.3f} | {nulls[0].upper(measure):.3f} | "
                  f"{nulls[1].upper(measure):.3f} |")


if __name__ == "__main__":
    main()
