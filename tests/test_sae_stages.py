"""The activations, sae and features stages on the micro world, the SAE experiments, and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lfp_engine.sae.activations import ActivationSet
from lfp_engine.run.config import build_config
from lfp_engine.run.errors import ConfigError
from lfp_engine.run.manifest import ensure_tables, read_manifest
from lfp_engine.run.presets import preset
from lfp_engine.sae.metrics import MIN_INCREASE_STANDARD_ERRORS
from lfp_engine.sae.saelens_format import find_saes, load_sae, read_cfg
from lfp_engine.run.store import RunPaths, RunStore
from precompute.cli import main

from .conftest import run_lfp

METRIC_COLUMNS = ["layer", "dict_size", "architecture", "l1_coefficient", "n_train_examples", "mse", "normalized_mse",
                  "variance_explained", "l0", "l0_fraction", "l0_scaled", "dead_fraction", "dense_fraction", "ce_clean",
                  "ce_spliced", "ce_zero_ablated", "loss_increase", "loss_increase_se", "loss_recovered", "train_seconds"]
FEATURE_TYPES = {"model": "VARCHAR", "layer": "BIGINT", "dict_size": "BIGINT", "feature": "BIGINT", "twin_feature": "BIGINT",
                 "twin_cosine": "DOUBLE", "is_shared": "BOOLEAN", "shared_rank": "BIGINT", "density": "DOUBLE",
                 "max_activation": "DOUBLE", "mean_activation": "DOUBLE", "explanation": "VARCHAR",
                 "explanation_source": "VARCHAR", "relevance": "BOOLEAN", "simulation_score": "DOUBLE",
                 "detection_score": "DOUBLE"}
EXAMPLE_TYPES = {"model": "VARCHAR", "layer": "BIGINT", "dict_size": "BIGINT", "feature": "BIGINT", "kind": "VARCHAR", "rank": "BIGINT",
                 "quantile": "DOUBLE", "text_id": "BIGINT", "position": "BIGINT", "token_ids": "INTEGER[]",
                 "tokens": "VARCHAR[]", "activations": "DOUBLE[]", "peak_index": "BIGINT",
                 "max_activation": "DOUBLE"}


def column_types(store: RunStore, table: str) -> dict[str, str]:
    return dict(store.query(f"DESCRIBE {table}")[["column_name", "column_type"]].values)


@pytest.mark.slow
def test_the_sae_stages_fill_the_store(micro_run):
    store = RunStore(micro_run)
    paths = RunPaths(micro_run)
    manifest = read_manifest(store)
    assert all(manifest[s].status == "done" for s in ("activations", "sae", "features"))
    layers = manifest["divergence"].outputs["layers"]
    config = build_config([{"preset": "micro"}, preset("micro").overrides])

    train = ActivationSet(paths.activations / "train")
    assert train.layers == layers and train.n_rows == 6000 and train.info.n_shards > 1
    assert ActivationSet(paths.activations / "eval").n_rows == 1500
    d = train.d_model

    all_metrics = store.read("sae_metrics", order_by="model DESC, layer, dict_size")
    assert set(METRIC_COLUMNS) <= set(all_metrics.columns)
    assert list(all_metrics["model"].unique()) == ["tuned", "base"]
    for model in ("tuned", "base"):
        part = all_metrics[all_metrics["model"] == model]
        assert [(r.layer, r.dict_size) for r in part.itertuples()] == [(l, m * d) for l in layers for m in (1, 2)]
    metrics = all_metrics
    assert metrics["variance_explained"].between(0.3, 1).all() and (metrics["l0"] > 0).all()
    assert metrics[["dead_fraction", "dense_fraction", "l0_fraction"]].stack().between(0, 1).all()
    np.testing.assert_allclose(metrics["loss_increase"], metrics["ce_zero_ablated"] - metrics["ce_clean"])
    within_noise = metrics["loss_increase"] < MIN_INCREASE_STANDARD_ERRORS * metrics["loss_increase_se"]
    assert (metrics["loss_recovered"].isna() == within_noise).all()
    assert (metrics["loss_increase"] > 0).all() and not within_noise.all()

    for model, name in (("tuned", "./models/tuned"), ("base", "./world/base")):
        found = find_saes(paths.saes_of(model))
        assert sorted(found) == [(l, m * d) for l in layers for m in (1, 2)]
        for (layer, size), folder in found.items():
            cfg = read_cfg(folder)
            assert cfg["metadata"]["hook_name"] == f"gpt_neox.layers.{layer}.mlp"
            assert cfg["metadata"]["model_name"] == name
            sae = load_sae(folder)
            assert sae.tied and sae.d_sae == size and sae.d_in == d
    assert ActivationSet(paths.activations_of("base") / "train").n_rows == train.n_rows

    assert column_types(store, "features") | FEATURE_TYPES == column_types(store, "features")
    features = store.read("features")
    assert len(features) == sum(metrics["dict_size"])
    assert features["twin_cosine"].between(-1, 1 + 1e-9).all()
    assert (features["is_shared"] == (features["twin_cosine"] > config.features.shared_threshold)).all()
    for _, group in features.groupby(["model", "layer", "dict_size"]):
        assert sorted(group["shared_rank"]) == list(range(1, len(group) + 1))

    assert column_types(store, "feature_examples") == EXAMPLE_TYPES
    examples = store.read("feature_examples")
    assert set(examples["kind"]) == {"top", "quantile"}
    assert examples.loc[examples["kind"] == "top", "quantile"].isna().all()
    assert all(len(t) == len(a) == len(i) <= 24 for t, a, i in
               zip(examples["tokens"], examples["activations"], examples["token_ids"]))
    assert (examples["max_activation"] > 0).all()
    assert all(a[i] == m for a, i, m in zip(examples["activations"], examples["peak_index"], examples["max_activation"]))
    logits = store.read("feature_logits")
    assert set(logits["direction"]) == {"boost", "suppress"}
    assert (logits[logits["direction"] == "boost"]["effect"] >= logits[logits["direction"] == "suppress"]["effect"].max()
            ).any()
    assert len(store.read("feature_neighbors")) == len(features) * config.features.n_neighbors
    assert (store.read("feature_histograms")["count"] >= 0).all()
    summary = store.read("shared_features_summary")
    assert len(summary) == 2 * 2 * len(layers) and summary["mean_max_cosine"].between(0, 1).all()


@pytest.mark.slow
def test_the_crosscoder_measures_against_the_sae_stages_reference_losses(micro_run):
    """The crosscoder stage reads the clean and zero-ablated losses back from `sae_metrics` (the same
    held-out texts): one reference for both kinds of dictionary."""
    store = RunStore(micro_run)
    sae = store.read("sae_metrics")[["model", "layer", "ce_clean", "ce_zero_ablated"]].drop_duplicates()
    crosscoder = store.read("crosscoder_metrics")
    merged = crosscoder.merge(sae, on=["model", "layer"], suffixes=("", "_sae"), validate="one_to_one")
    assert len(merged) == len(crosscoder) == 2 * len(read_manifest(store)["divergence"].outputs["layers"])
    assert (merged["ce_clean"] == merged["ce_clean_sae"]).all()
    assert (merged["ce_zero_ablated"] == merged["ce_zero_ablated_sae"]).all()
    expected = (merged["ce_zero_ablated"] - merged["ce_spliced"]) / (merged["ce_zero_ablated"] - merged["ce_clean"])
    np.testing.assert_allclose(merged["loss_recovered"], expected)


@pytest.mark.slow
def test_the_same_config_gives_the_same_saes(micro_run, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(micro_run, out)
    run_lfp("run", "--out", str(out), "--stages", "activations,sae", "--force", "activations,sae")
    for model in ("tuned", "base"):
        for (key, folder) in find_saes(RunPaths(micro_run).saes_of(model)).items():
            again = RunPaths(out).sae(*key, model) / "sae_weights.safetensors"
            assert (folder / "sae_weights.safetensors").read_bytes() == again.read_bytes()
    columns = [c for c in METRIC_COLUMNS if c != "train_seconds"]
    assert RunStore(out).read("sae_metrics")[columns].equals(RunStore(micro_run).read("sae_metrics")[columns])


@pytest.mark.slow
def test_sweep_and_comparison_write_their_tables(micro_run, tmp_path):
    out = tmp_path / "experiments"
    shutil.copytree(micro_run, out)
    before = RunStore(out).read("sae_metrics", where="model = ?", params=["tuned"])
    result = run_lfp("sae-sweep", str(out), "--l1", "0.001,0.01", "--set", "sae.n_train_examples=960")
    assert "l1_coefficient" in result.stdout
    sweep = RunStore(out).read("sae_l1_sweep")
    assert sorted(set(sweep["l1_coefficient"])) == [0.001, 0.01] and len(sweep) == 2 * len(before)
    run_lfp("sae-compare", str(out), "--set", "sae.n_train_examples=960")
    comparison = RunStore(out).read("sae_comparison")
    assert set(comparison["layer_choice"]) == {"most_divergent", "lowest"}
    assert set(comparison["architecture"]) == {"tied", "untied"}
    lowest = comparison[comparison["layer_choice"] == "lowest"]
    assert sorted(set(lowest["layer"])) == list(range(len(set(before["layer"]))))
    assert RunStore(out).read("sae_metrics", where="model = ?", params=["tuned"]).equals(before)  # left alone
    assert not (out / ".work" / "sae-compare").exists()


def test_sae_stages_without_their_inputs_say_what_to_run(tmp_path, capsys):
    assert main(["run", "--preset", "micro", "--out", str(tmp_path / "new"), "--stages", "sae"]) == 2
    assert "needs ['activations'] to be done first" in capsys.readouterr().err
    assert main(["sae-sweep", str(tmp_path / "nothing")]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    ensure_tables(RunStore(tmp_path / "empty"))
    assert main(["sae-compare", str(tmp_path / "empty")]) == 2
    assert "stage 'activations' has not finished" in capsys.readouterr().err
    assert main(["sae-sweep", str(tmp_path / "empty"), "--l1", "0.1,x"]) == 2
    assert "--l1: expected comma-separated numbers" in capsys.readouterr().err


@pytest.mark.parametrize("setting,message", [
    ({"sae": {"dict_multipliers": [0, 2]}}, "a dictionary size of zero has no features"),
    ({"sae": {"dict_multipliers": [2, 1]}}, "two increasing whole numbers"),
    ({"sae": {"architecture": "gated"}}, "sae.architecture: expected one of tied, untied, topk, batchtopk"),
    ({"sae": {"n_train_examples": 8}}, "sae.n_train_examples"),
    ({"activations": {"n_train_tokens": 0}}, "activations.n_train_tokens"),
    ({"features": {"shared_threshold": 2}}, "features.shared_threshold"),
])
def test_bad_sae_settings_are_refused_by_name(setting, message):
    with pytest.raises(ConfigError, match=message):
        build_config([setting])
