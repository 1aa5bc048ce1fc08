"""Settings: presets, typed overrides, and the errors a user gets for each kind of mistake."""

from __future__ import annotations

import json
import re
import typing

import pytest

from lfp_engine.explain.settings import LlmSettings
from lfp_engine.run.config import RunConfig, build_config, config_from_dict
from lfp_engine.run.errors import ConfigError
from lfp_engine.run.overrides import known_settings, load_config_file, merge, nest, parse_override
from lfp_engine.run.presets import PRESETS, preset
from lfp_engine.run.tasks import TASKS, TaskName
from lfp_engine.sae.settings import ARCHITECTURES
from lfp_engine.sae.settings import SaeSettings
from lfp_engine.tuning.settings import RlhfSettings


def test_every_preset_builds_and_validates():
    for p in PRESETS.values():
        config = build_config([{"preset": p.name}, p.overrides])
        assert config.preset == p.name


def test_defaults_are_the_papers_settings():
    c = RunConfig()
    assert (c.rlhf.generation_batch_size, c.rlhf.mini_batch_size, c.rlhf.beta, c.rlhf.max_grad_norm,
            c.rlhf.learning_rate) == (64, 16, 0.5, 1.0, 1e-6)
    assert (c.dpo.steps, c.dpo.batch_size, c.dpo.learning_rate, c.dpo.beta, c.dpo.adam_epsilon) == (5000, 8, 3e-5, 0.1, 1e-8)
    assert (c.reward.scale, c.reward.clip, c.divergence.top_k) == (0.2, 10.0, 5)


def test_hub_presets_take_the_papers_ppo_updates_and_sae_penalty():
    """Section 3.1: PPO batch 64, mini-batch 16, TRL's default 4 epochs, one pass over IMDb's 25,000
    training reviews; section 3.2: alpha 0.001, GPT-Neo 0.0015."""
    for name in ("pythia-70m", "pythia-160m", "gpt-neo-125m"):
        c = build_config([{"preset": name}, preset(name).overrides])
        r = c.rlhf
        updates_per_rollout = r.num_iterations * r.generation_batch_size // r.mini_batch_size
        assert (r.generation_batch_size, r.mini_batch_size, r.num_iterations) == (64, 16, 4)
        assert r.steps == 25_000 / 64 * updates_per_rollout == 6250
        assert r.steps / updates_per_rollout * r.generation_batch_size == 25_000  # completions sampled
        assert c.sae.l1_coefficient == (0.0015 if name == "gpt-neo-125m" else 0.001)


def test_overrides_are_parsed_and_typed():
    assert parse_override("seed=3") == ("seed", 3)
    assert parse_override("rlhf.beta=0.2") == ("rlhf.beta", 0.2)
    assert parse_override("world.base_model=EleutherAI/pythia-70m") == ("world.base_model", "EleutherAI/pythia-70m")
    config = build_config([preset("tiny").overrides, nest(dict([parse_override("rlhf.steps=12"),
                                                                  parse_override("reward.score_prefix=false"),
                                                                  parse_override("rlhf.beta=1")]))])
    assert config.rlhf.steps == 12 and config.reward.score_prefix is False
    assert isinstance(config.rlhf.beta, float) and config.rlhf.beta == 1.0


def test_stored_config_round_trips():
    config = build_config([preset("micro").overrides, {"seed": 7}])
    assert config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize("layer, message", [
    ({"rlhf": {"stepz": 3}}, "unknown setting 'rlhf.stepz'"),
    ({"nonsense": 1}, "unknown setting 'nonsense'"),
    ({"rlhf": {"steps": "many"}}, "rlhf.steps: expected a whole number"),
    ({"rlhf": {"steps": 0}}, "rlhf.steps: must be at least 1"),
    ({"rlhf": {"beta": -0.1}}, "rlhf.beta"),
    ({"rlhf": {"learning_rate": float("nan")}}, "expected a finite number"),
    ({"rlhf": {"num_generations": 1}}, "leave-one-out"),
    ({"synthetic": {"hidden_size": 30, "num_heads": 4}}, "divisible"),
    ({"synthetic": {"n_reward_only_words": 2}}, "synthetic.n_reward_only_words: expected 0, or 4"),
    ({"synthetic": {"n_contested_words": 99}}, "synthetic.n_contested_words: expected 0 to"),
    ({"synthetic": {"n_contested_words": -1}}, "synthetic.n_contested_words"),
    ({"task": "cooking"}, "unknown task 'cooking'"),
    ({"seed": -1}, "seed"),
    ({"world": {"kind": "hub", "base_model": ""}}, "world.base_model"),
    ({"divergence": {"top_k": 0}}, "divergence.top_k"),
    ({"rlhf": 5}, "is a section"),
    ({"sae": {"architecture": "x"}}, "setting sae.architecture: expected one of tied, untied, topk, batchtopk, got 'x'"),
    ({"world": {"kind": "cloud"}}, "setting world.kind: expected one of synthetic, hub, got 'cloud'"),
    ({"world": {"dtype": "int8"}}, "setting world.dtype: expected one of float32, bfloat16, float16, got 'int8'"),
    ({"device": "cuda:x"}, "setting device: expected auto, cpu or cuda[:N], got 'cuda:x'"),
    ({"device": "gpu"}, "setting device"),
    ({"preset": "huge"}, "setting preset: unknown preset 'huge'"),
    ({"task": "classifier", "reward": {"classifier": ""}}, "setting reward.classifier"),
    ({"activations": {"models": ["base"]}}, "activations.models"),
    ({"dpo": {"adam_epsilon": 0}}, "dpo.adam_epsilon: must be positive"),
])
def test_bad_settings_are_refused_with_the_settings_name(layer, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config([preset("tiny").overrides, layer])


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown preset 'huge'.*tiny"):
        preset("huge")


def test_choices_are_one_definition():
    assert set(typing.get_args(TaskName)) == set(TASKS)
    assert ARCHITECTURES == ("tied", "untied", "topk", "batchtopk")
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert build_config([{"device": device}]).device == device


def test_sections_built_in_code_check_their_fields_too():
    with pytest.raises(ConfigError, match="sae.architecture: expected one of"):
        SaeSettings(architecture="gated")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rlhf.steps: must be at least 1"):
        RlhfSettings(steps=0)
    with pytest.raises(ConfigError, match="llm.max_tokens"):
        LlmSettings(max_tokens=1)


def test_sections_are_checked_on_their_final_values():
    """A value may be out of range in one layer as long as a later layer repairs it: the
    sections are built once, from the merged layers."""
    config = build_config([{"world": {"kind": "hub"}}, {"world": {"base_model": "some/model"}},
                           {"rlhf": {"mini_batch_size": 128}}, {"rlhf": {"generation_batch_size": 128}}])
    assert (config.world.kind, config.world.base_model) == ("hub", "some/model")
    assert (config.rlhf.mini_batch_size, config.rlhf.generation_batch_size) == (128, 128)


def test_layers_merge_key_by_key_and_lists_are_replaced():
    a = {"sae": {"dict_multipliers": [1, 2], "topk": 4}, "seed": 1}
    b = {"sae": {"dict_multipliers": [2, 4]}, "seed": 2}
    assert merge(a, b) == {"sae": {"dict_multipliers": [2, 4], "topk": 4}, "seed": 2}
    assert a == {"sae": {"dict_multipliers": [1, 2], "topk": 4}, "seed": 1}  # inputs untouched
    assert build_config([a, b]).sae.dict_multipliers == [2, 4]


def test_config_files_take_nested_and_dotted_keys(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('seed = 4\n"rlhf.beta" = 0.3\n[rlhf]\nsteps = 7\n')
    assert load_config_file(toml) == {"seed": 4, "rlhf": {"steps": 7, "beta": 0.3}}
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"sae.topk": 8}))
    assert build_config([load_config_file(js)]).sae.topk == 8
    yaml = tmp_path / "s.yaml"
    yaml.write_text("seed: 1")
    with pytest.raises(ConfigError, match="expected a .toml or .json file"):
        load_config_file(yaml)


def test_known_settings_drop_what_this_version_no_longer_has():
    stored = build_config([preset("micro").overrides, {"seed": 5}]).to_dict()
    stored["retired"] = 1
    stored["rlhf"]["old_knob"] = 2
    del stored["probe"]  # a section added since the run was made takes its defaults
    config = config_from_dict(known_settings(stored, RunConfig))
    assert config.seed == 5 and config.rlhf.steps == preset("micro").overrides["rlhf"]["steps"]
    assert config.probe == RunConfig().probe
