"""Settings: presets, typed overrides, and the errors a user gets for each kind of mistake."""

from __future__ import annotations

import pytest

from lfp_engine.run.config import RunConfig, build_config, config_from_dict, nest, parse_override
from lfp_engine.run.errors import ConfigError
from lfp_engine.run.presets import PRESETS, preset


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
    ({"task": "cooking"}, "unknown task 'cooking'"),
    ({"seed": -1}, "seed"),
    ({"world": {"kind": "hub", "base_model": ""}}, "world.base_model"),
    ({"divergence": {"top_k": 0}}, "divergence.top_k"),
    ({"rlhf": 5}, "is a section"),
])
def test_bad_settings_are_refused_with_the_settings_name(layer, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build_config([preset("tiny").overrides, layer])


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown preset 'huge'.*tiny"):
        preset("huge")
