"""The crosscoder over base and tuned: a planted difference is found, identical models show none,
Latent Scaling against a float64 least-squares fit, pairing checks, files, and ablation of a latent
inside the tuned model with the base model running alongside."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from lfp_engine.diffing.crosscoder import Crosscoder, load_crosscoder, save_crosscoder, train_crosscoders
from lfp_engine.diffing.metrics import crosscoder_spliced_losses
from lfp_engine.diffing.paired_activations import MODELS, PairedActivations
from lfp_engine.diffing.paired_forward import BaseCompanion, PairedModels
from lfp_engine.diffing.settings import CrosscoderSettings
from lfp_engine.diffing.tags import latent_geometry, latent_scaling, specific, tag_latents
from lfp_engine.models.architecture import mlp_modules
from lfp_engine.models.hooks import capture_mlp_outputs
from lfp_engine.run.errors import InputError
from lfp_engine.sae.activations import capture_activations, mlp_outputs
from lfp_engine.sae.autoencoder import SparseAutoencoder
from lfp_engine.sae.metrics import ReferenceLosses, text_losses
from lfp_engine.validation.interventions import Intervention, intervening, intervention_hooks

from .conftest import tiny_neox

LAYER, WIDTH, VOCAB = 1, 16, 64
TRIGGERS = torch.arange(5, 13)
SETTINGS = CrosscoderSettings(dict_multiplier=8, k=4, batch_size=128, n_train_examples=60_000, learning_rate=5e-3,
                              auxk_dead_tokens=2000)


def with_planted_direction(model, direction: torch.Tensor):
    """A copy of `model` whose MLP output at LAYER gains `direction` at every token that follows a
    trigger token: what tuning would add if it taught the model a new feature. Hooks are the copy's
    own, registered first, so any capture sees the planted output."""
    planted = copy.deepcopy(model)
    state = {}

    def remember(_module, args, kwargs):
        state["ids"] = kwargs.get("input_ids", args[0] if args else None)

    def plant(_module, _inputs, output):
        ids = state["ids"]
        after_trigger = torch.zeros_like(ids, dtype=output.dtype)
        after_trigger[:, 1:] = torch.isin(ids[:, :-1], TRIGGERS).to(output.dtype)
        return output + after_trigger[..., None] * direction

    planted.register_forward_pre_hook(remember, with_kwargs=True)
    mlp_modules(planted, [LAYER])[LAYER].register_forward_hook(plant)
    return planted


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    """Activation sets of a base model, the same model (identical), and a copy with a planted
    direction, all captured from the same random token sequences; and the planted direction."""
    root = tmp_path_factory.mktemp("crosscoder")
    base = tiny_neox(layers=3, hidden=WIDTH, vocab=VOCAB, seed=0)
    generator = torch.Generator().manual_seed(1)
    sequences = [(i, torch.randint(2, VOCAB, (32,), generator=generator).tolist()) for i in range(300)]

    def capture(model, name: str) -> Path:
        capture_activations(model, iter(sequences), [LAYER], root / name, pad_token_id=0, bos_token_id=1,
                            batch_size=64, shard_rows=4096, model_name=name)
        return root / name

    folders = {"base": capture(base, "base"), "same": capture(copy.deepcopy(base), "same")}
    typical = PairedActivations(folders["base"], folders["base"]).shard(0, [LAYER])[0][:, :WIDTH].norm(dim=1).mean()
    direction = torch.randn(WIDTH, generator=generator)
    direction = direction / direction.norm() * 2 * typical
    folders["planted"] = capture(with_planted_direction(base, direction), "planted")
    torch.save(direction, root / "direction.pt")
    return folders


def diffed(worlds, tuned: str) -> tuple[Crosscoder, np.ndarray, PairedActivations]:
    paired = PairedActivations(worlds["base"], worlds[tuned])
    crosscoder = train_crosscoders(paired, SETTINGS, seed=0).crosscoders[0]
    codes = torch.cat([crosscoder.module.encode(x[0]) for _, x in paired.iter_rows([LAYER], 4096)])
    tags = tag_latents(latent_geometry(crosscoder)["relative_norm"].to_numpy(), (codes > 0).any(0).numpy(), SETTINGS)
    return crosscoder, tags, paired


def test_a_planted_direction_comes_out_as_a_tuned_only_latent_aligned_with_it(worlds):
    crosscoder, tags, paired = diffed(worlds, "planted")
    direction = torch.load(worlds["base"].parent / "direction.pt")
    cosine = torch.nn.functional.cosine_similarity(crosscoder.decoders()[1], direction[None], dim=1).numpy()
    best = int(np.argmax(cosine))
    assert cosine[best] > 0.95 and tags[best] == "tuned-only"
    geometry = latent_geometry(crosscoder)
    assert geometry.loc[best, "relative_norm"] >= SETTINGS.tuned_only_min
    rows = (x[0] for _, x in paired.iter_rows([LAYER], 4096))
    scaling = latent_scaling(crosscoder, rows, tags)
    assert specific(tags, scaling["scaling_error_ratio"].to_numpy(), scaling["scaling_reconstruction_ratio"].to_numpy(),
                    SETTINGS)[best]  # the base model needs none of it: not an artefact


def test_identical_models_give_no_tuned_only_or_base_only_latent(worlds):
    crosscoder, tags, _ = diffed(worlds, "same")
    assert not np.isin(tags, ("tuned-only", "base-only")).any()
    alive = tags != "dead"
    assert alive.sum() > 10
    relative = latent_geometry(crosscoder)["relative_norm"].to_numpy()
    np.testing.assert_allclose(relative[alive], 0.5, atol=1e-3)


def test_pairs_must_come_from_the_same_tokens(worlds, tmp_path):
    other = tiny_neox(layers=3, hidden=WIDTH, vocab=VOCAB, seed=3)
    shifted = [(i, torch.randint(2, VOCAB, (32,), generator=torch.Generator().manual_seed(i)).tolist())
               for i in range(300)]
    capture_activations(other, iter(shifted), [LAYER], tmp_path / "other", pad_token_id=0, bos_token_id=1,
                        batch_size=64, shard_rows=4096, model_name="other")
    with pytest.raises(InputError, match="same tokens"):
        PairedActivations(worlds["base"], tmp_path / "other")


def random_crosscoder(width: int = WIDTH, latents: int = 24, seed: int = 0) -> Crosscoder:
    module = SparseAutoencoder(2 * width, latents, "batchtopk", k=3, n_blocks=2)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.4)
    module.set_threshold(0.2)
    return Crosscoder(LAYER, module.eval(), (1.5, 2.0), 0.2)


def test_latent_scaling_matches_a_float64_least_squares_fit():
    """beta = argmin_b sum_x ||b f_j(x) d_j - y_j(x)||^2, fitted directly for a few latents."""
    crosscoder = random_crosscoder()
    x = torch.randn(300, 2 * WIDTH, generator=torch.Generator().manual_seed(2))
    tags = np.array(["tuned-only"] * 23 + ["base-only"])
    ratios = latent_scaling(crosscoder, [x[:170], x[170:]], tags)
    module = crosscoder.module
    f = module.encode(x).double().detach()
    x_hat = module.decode(module.encode(x)).double().detach()
    d_base, d_tuned = (d.double() for d in crosscoder.decoders())
    x64 = x.double()
    checked = 0
    for j in range(24):
        if (f[:, j] > 0).sum() < 3:
            continue
        own, other = (0, 1) if tags[j] == "base-only" else (1, 0)
        direction = (d_base, d_tuned)[own][j]

        def beta(target: torch.Tensor) -> float:
            design = (f[:, j, None] * direction[None, :]).reshape(-1, 1).numpy()
            return float(np.linalg.lstsq(design, target.reshape(-1).numpy(), rcond=None)[0][0])

        def error(model: int) -> torch.Tensor:
            block = slice(model * WIDTH, (model + 1) * WIDTH)
            own_part = f[:, j, None] * (d_base, d_tuned)[model][j][None, :]
            return x64[:, block] - x_hat[:, block] + own_part

        def reconstruction(model: int) -> torch.Tensor:
            return x_hat[:, model * WIDTH:(model + 1) * WIDTH]

        assert ratios.loc[j, "scaling_error_ratio"] == pytest.approx(beta(error(other)) / beta(error(own)), rel=1e-6)
        assert ratios.loc[j, "scaling_reconstruction_ratio"] == pytest.approx(
            beta(reconstruction(other)) / beta(reconstruction(own)), rel=1e-6)
        checked += 1
    assert checked >= 5


def test_crosscoder_files_round_trip(tmp_path):
    crosscoder = random_crosscoder()
    save_crosscoder(crosscoder, tmp_path, model_name="m", hook_name="gpt_neox.layers.1.mlp")
    loaded = load_crosscoder(tmp_path)
    assert (loaded.layer, loaded.scales, loaded.score_threshold) == (LAYER, (1.5, 2.0), 0.2)
    assert loaded.module.n_blocks == 2 and loaded.module.architecture == "batchtopk"
    for (name, p), (_, q) in zip([*crosscoder.module.named_parameters(), *crosscoder.module.named_buffers()],
                                 [*loaded.module.named_parameters(), *loaded.module.named_buffers()], strict=True):
        assert torch.equal(p, q), name
    torch.testing.assert_close(loaded.normalized_norms(), crosscoder.module.block_norms() / torch.tensor([1.5, 2.0]))


def test_spliced_losses_read_the_other_model_from_the_captured_rows(tmp_path):
    """The crosscoder's spliced-in loss takes the other model's output at each token from the held-out
    paired rows; against running the other model on every batch and splicing its output in (what the
    stage did before), on texts of varied length (padding), the same loss up to float32 rounding.
    Given reference losses (the sae stage's), it uses them instead of measuring them."""
    models = {"base": tiny_neox(layers=3, hidden=WIDTH, vocab=VOCAB, seed=0),
              "tuned": tiny_neox(layers=3, hidden=WIDTH, vocab=VOCAB, seed=3)}
    generator = torch.Generator().manual_seed(2)
    lengths = torch.randint(3, 20, (40,), generator=generator).tolist()
    sequences = [(i, torch.randint(2, VOCAB, (n,), generator=generator).tolist()) for i, n in enumerate(lengths)]
    for name, model in models.items():
        capture_activations(model, iter(sequences), [LAYER], tmp_path / name, pad_token_id=0, bos_token_id=1,
                            batch_size=16, shard_rows=4096, model_name=name)
    paired = PairedActivations(tmp_path / "base", tmp_path / "tuned")
    crosscoder = random_crosscoder()
    table = crosscoder_spliced_losses(models, 0, paired, [crosscoder], batch_size=8).set_index("model")
    texts = [tokens for _, tokens in paired.sequences()]
    common = dict(pad_token_id=0, bos_token_id=1, batch_size=8)
    for block, name in enumerate(MODELS):
        other, captured = models[MODELS[1 - block]], {}

        def run_other(ids, attention, text, other=other, captured=captured):
            captured["h"] = mlp_outputs(other, [LAYER], ids, attention)[LAYER]

        def splice(h, block=block, captured=captured):
            pair = [captured["h"], h] if block == 1 else [h, captured["h"]]
            return crosscoder.module(torch.cat(pair, dim=-1))[..., block * WIDTH:(block + 1) * WIDTH]

        expected = text_losses(models[name], texts, layer=LAYER, replace=splice, before_batch=run_other,
                               **common).mean
        assert table.loc[name, "ce_spliced"] == pytest.approx(expected, rel=1e-5)
        assert table.loc[name, "ce_clean"] == text_losses(models[name], texts, **common).mean
        assert table.loc[name, "ce_zero_ablated"] == text_losses(models[name], texts, layer=LAYER,
                                                                  replace=torch.zeros_like, **common).mean
    given = {(name, LAYER): ReferenceLosses(1.0, 3.0, 2.0, 0.1) for name in MODELS}
    reused = crosscoder_spliced_losses(models, 0, paired, [crosscoder], batch_size=8, references=given)
    assert (reused["ce_clean"] == 1.0).all() and (reused["ce_zero_ablated"] == 3.0).all()
    np.testing.assert_array_equal(reused["ce_spliced"], table["ce_spliced"].to_numpy())
    np.testing.assert_allclose(reused["loss_recovered"], (3.0 - reused["ce_spliced"]) / 2.0)


def paired_models() -> tuple[torch.nn.Module, PairedModels, Crosscoder]:
    tuned = tiny_neox(layers=3, hidden=WIDTH, vocab=VOCAB, seed=0)
    base = tiny_neox(layers=3, hidden=WIDTH, vocab=VOCAB, seed=1)
    crosscoder = random_crosscoder()
    with torch.no_grad():
        crosscoder.module.threshold.zero_()
        crosscoder.module.b_enc.fill_(0.3)  # many latents fire
    return tuned, PairedModels(base, {crosscoder.key: crosscoder}), crosscoder


@torch.no_grad()
def test_ablating_a_crosscoder_latent_removes_exactly_its_tuned_contribution():
    tuned, paired, crosscoder = paired_models()
    ids = torch.randint(2, VOCAB, (2, 9), generator=torch.Generator().manual_seed(4))
    with capture_mlp_outputs(paired.base, [LAYER]) as base_out:
        paired.base(ids)
    with capture_mlp_outputs(tuned, [LAYER]) as tuned_out:
        clean = tuned(ids).logits
    codes = crosscoder.encode_pair(base_out[LAYER], tuned_out[LAYER])
    latent = int(codes.sum((0, 1)).argmax())
    expected = tuned_out[LAYER] - codes[..., latent, None] * crosscoder.decoders()[1][latent]
    with intervention_hooks(tuned, {}, paired):
        with intervening(Intervention(ablate_crosscoder={crosscoder.key: ()}), {}, paired):
            assert torch.equal(tuned(ids).logits, clean)  # nothing ablated: the model, bit for bit
        with intervening(Intervention(ablate_crosscoder={crosscoder.key: (latent,)}), {}, paired):
            with capture_mlp_outputs(tuned, [LAYER]) as after:
                tuned(ids)
    torch.testing.assert_close(after[LAYER], expected, rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="no crosscoder"):
        with intervening(Intervention(ablate_crosscoder={(LAYER, 7): (0,)}), {}, paired):
            pass


@torch.no_grad()
def test_during_generation_the_base_model_reads_what_the_tuned_model_reads(monkeypatch):
    """With the key-value cache, each step feeds only the new token; the base companion keeps a
    cache of its own, so its outputs at each step equal a full forward pass of the base model over
    the finished sequences, position by position (left padding included)."""
    tuned, paired, crosscoder = paired_models()
    seen: list[torch.Tensor] = []
    run = BaseCompanion.run

    def spy(self, args, kwargs):
        run(self, args, kwargs)
        seen.append(self.outputs[LAYER].clone())

    monkeypatch.setattr(BaseCompanion, "run", spy)
    prompts = torch.tensor([[0, 0, 7, 8, 9], [3, 4, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with intervention_hooks(tuned, {}, paired), \
            intervening(Intervention(ablate_crosscoder={crosscoder.key: (0, 1, 2)}), {}, paired):
        out = tuned.generate(input_ids=prompts, attention_mask=mask, max_new_tokens=4, do_sample=False,
                             pad_token_id=0)
    full_mask = torch.cat([mask, torch.ones(2, out.shape[1] - mask.shape[1], dtype=mask.dtype)], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp_min(0)
    with capture_mlp_outputs(paired.base, [LAYER]) as full:
        paired.base(input_ids=out, attention_mask=full_mask, position_ids=positions)
    stepped = torch.cat(seen, dim=1)
    assert len(seen) == 4 and stepped.shape[1] == out.shape[1] - 1
    attended = full_mask[:, :stepped.shape[1]].bool()
    torch.testing.assert_close(stepped[attended], full[LAYER][:, :stepped.shape[1]][attended], rtol=1e-4, atol=1e-5)


def test_reward_correlations_are_partial_given_length_with_false_discovery_control():
    """Against the textbook formula r_xy.z = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)), and
    a latent that only tracks length (it fires on every full stop) shows no link."""
    from lfp_engine.diffing.reward_correlation import reward_correlations

    rng = np.random.default_rng(0)
    n = 80
    lengths = rng.integers(10, 120, n).astype(float)
    rewards = 0.02 * lengths + rng.normal(size=n)
    totals = np.column_stack([rewards * 2 + rng.normal(size=n), rng.normal(size=n), np.zeros(n),
                              0.5 * lengths + rng.normal(0, 0.5, n)])
    frame = reward_correlations(totals, rewards, lengths)
    for j in (0, 1, 3):
        c = np.corrcoef(np.vstack([totals[:, j], rewards, lengths]))
        expected = (c[0, 1] - c[0, 2] * c[1, 2]) / np.sqrt((1 - c[0, 2] ** 2) * (1 - c[1, 2] ** 2))
        assert frame.loc[j, "reward_r"] == pytest.approx(expected, rel=1e-9)
        t = expected * np.sqrt((n - 3) / (1 - expected ** 2))
        assert frame.loc[j, "reward_p"] == pytest.approx(2 * stats.t.sf(abs(t), n - 3), rel=1e-6)
        z, half = np.arctanh(expected), 1.959963984540054 / np.sqrt(n - 4)
        assert (frame.loc[j, "reward_ci_low"], frame.loc[j, "reward_ci_high"]) == pytest.approx(
            (np.tanh(z - half), np.tanh(z + half)))
    assert np.corrcoef(totals[:, 3], rewards)[0, 1] > 0.3  # raw correlation through length alone...
    assert frame.loc[3, "reward_p"] > 0.01  # ...which the partial correlation does not count
    assert np.isnan(frame.loc[2, "reward_r"]) and frame.loc[2, "n_texts_firing"] == 0  # never fires: untested
    p = frame.loc[[0, 1, 3], "reward_p"].to_numpy()
    order = np.argsort(p)
    bh = np.minimum.accumulate((p[order] * 3 / np.arange(1, 4))[::-1])[::-1]
    np.testing.assert_allclose(frame.loc[[0, 1, 3], "reward_q"].to_numpy()[order], np.minimum(bh, 1))


def test_tuned_only_latents_rank_by_reward_link_and_sentences_say_no_evidence_honestly():
    from lfp_engine.diffing.report import plain_sentence
    from lfp_engine.diffing.tables import rank_by_reward, top_by_reward

    latents = pd.DataFrame({"layer": [1, 1, 2, 2, 2], "feature": [0, 1, 0, 1, 2],
                            "tag": ["tuned-only", "shared", "tuned-only", "tuned-only", "dead"],
                            "reward_r": [0.1, 0.9, -0.5, np.nan, np.nan], "probe_weight": [0.0, 1.0, 0.2, 3.0, 0.0]})
    latents["reward_rank"] = rank_by_reward(latents)
    assert latents["reward_rank"].tolist()[:4] == [3, 1, 2, 4] and pd.isna(latents["reward_rank"].iloc[4])
    top = top_by_reward(latents, 2)  # the tuned-only latents, by reward rank
    assert top.iloc[[2, 0]].tolist() == [1, 2] and top.isna().sum() == 3
    shared_only = latents.assign(tag=["shared", "shared", "changed", "shared", "dead"])
    assert top_by_reward(shared_only, 2).iloc[[1, 2]].tolist() == [1, 2]  # none created: the most reward-linked
    row = pd.Series({"layer": 2, "feature": 0, "tag": "tuned-only", "norm_base": 0.05, "norm_tuned": 1.0,
                     "specific": True, "decoder_cosine": 0.1,
                     "explanation": "positive adjectives: 'great'", "reward_r": 0.1, "reward_ci_low": -0.1, "reward_ci_high": 0.3,
                     "reward_q": 0.01})
    effect = pd.Series({"mean_difference": -0.2, "ci_low": -0.3, "ci_high": -0.1})
    text = plain_sentence(row, effect, pd.Series({"mean_difference": 0.01}))
    assert "; it fires on positive adjectives: 'great';" in text
    assert "5% as long" in text and "no more and no less reward that we can tell" in text
    assert "lowered the reward by 0.2 " in text and "against +0.01 " in text
    chance = plain_sentence(pd.Series({**row, "reward_r": 0.4, "reward_ci_low": 0.1, "reward_ci_high": 0.6,
                                       "reward_q": 0.3}))
    assert "no more and no less" in chance  # an interval off zero, but not after the false-discovery control
    linked = plain_sentence(pd.Series({**row, "reward_r": 0.4, "reward_ci_low": 0.1, "reward_ci_high": 0.6,
                                       "reward_q": 0.001}))
    assert "(for their length) earn more reward" in linked
    shared = plain_sentence(pd.Series({**row, "tag": "shared", "norm_base": 0.98, "decoder_cosine": 0.99}))
    assert "used by both models" in shared and "98% as long" in shared and "exists only" not in shared


def test_latent_scaling_is_said_of_the_tuned_only_latents_there_are():
    from lfp_engine.diffing.report import scaling_sentence

    none = pd.DataFrame({"tag": ["shared", "base-only", "dead"], "specific": [False, True, None]})
    assert scaling_sentence(none) == "There are no tuned-only latents, so Latent Scaling has nothing to confirm."
    some = pd.DataFrame({"tag": ["tuned-only", "tuned-only", "tuned-only", "base-only"],
                         "specific": [True, False, None, True]})
    assert scaling_sentence(some).startswith("Latent Scaling confirms 1 of the 3 tuned-only latents:")


def test_leaving_silent_latents_out_of_the_probe_fit_changes_nothing():
    """A column that is zero on every training row gets weight 0 from the ridge fit: fitting without
    it and putting 0 back is the same probe (what `fit_crosscoder_probe` does for silent latents)."""
    from lfp_engine.probe.linear import fit_regression

    rng = np.random.default_rng(3)
    X = rng.random((80, 6)) * (rng.random((80, 6)) < 0.5)
    X[:, [1, 4]] = 0.0
    y = X @ np.array([1.0, 0.0, -2.0, 0.5, 0.0, 1.5]) + rng.normal(0, 0.1, 80)
    words = np.array([f"w{i % 16}" for i in range(80)])
    full = fit_regression(X, y, words)
    live = X.any(axis=0)
    reduced = fit_regression(X[:, live], y, words)
    assert full.alpha == reduced.alpha
    np.testing.assert_allclose(full.weights[live], reduced.weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(full.weights[~live], 0.0, atol=1e-12)
    assert full.intercept == pytest.approx(reduced.intercept)
