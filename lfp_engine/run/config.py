"""Settings of a run: `RunConfig`, one section per step of the method, built from layers.

A run's behaviour is fully determined by one `RunConfig`. Each section lives beside the code of
its step (`lfp_engine/worlds/settings.py`, `tuning/`, `sae/`, `probe/`, `explain/`,
`validation/`, `diffing/`, `report/`) and checks its own fields when it is built; `RunConfig` adds its top-level
settings and the checks that span sections. Each pipeline stage fingerprints the sections it
reads, so changing a setting re-runs exactly the stages it affects. A config is built once from
its final values (`build_config`), so an out-of-range setting fails before any work starts and
before anything in the run folder is touched. `lfp settings` prints every field with its docs.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lfp_engine.diffing.settings import CrosscoderSettings
from lfp_engine.explain.settings import ExplainSettings, LlmSettings
from lfp_engine.probe.settings import ContrastiveSettings, ProbeSettings
from lfp_engine.report.settings import BehaviourSettings
from lfp_engine.run.errors import ConfigError
from lfp_engine.run.fields import field_docs, require, type_text
from lfp_engine.run.overrides import merge, typed_layer
from lfp_engine.run.presets import PRESETS
from lfp_engine.run.settings import DistributedSettings
from lfp_engine.run.tasks import TASKS, TaskName, task_spec
from lfp_engine.sae.settings import ActivationSettings, FeatureSettings, SaeSettings
from lfp_engine.tuning.settings import (DivergenceSettings, DpoSettings, EvaluationSettings, RewardSettings,
                                        RlhfSettings)
from lfp_engine.validation.settings import ValidateSettings
from lfp_engine.worlds.settings import SyntheticSettings, WorldSettings

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass
class RunConfig:
    """Everything that determines a run: its top-level settings and one section per step."""

    preset: str = "tiny"
    """The named starting point the run was made from (`lfp presets` lists them)."""
    seed: int = 0
    """Seed of the run; each stage derives its own from it, so the same config gives the same numbers."""
    task: TaskName = "vader"
    """What the policy is tuned for (paper 3.1): vader (RL on the lexicon reward, equation 3),
    classifier (RL on a sentiment classifier, appendix B), dpo (the world's preference pairs),
    hh (Anthropic HH-RLHF), toxic (toxic-dpo, the toxic answer preferred)."""
    device: str = "auto"
    """Where models run: auto (a GPU when there is one), cpu, cuda or cuda:N."""
    tuned_model: str = ""
    """Hub id or path of an already tuned model (yours): the rlhf stage then only evaluates it."""
    world: WorldSettings = field(default_factory=WorldSettings)
    """Base model, tokenizer and corpora (stage `world`)."""
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)
    """The offline world's generator and model (stage `world`, synthetic worlds)."""
    rlhf: RlhfSettings = field(default_factory=RlhfSettings)
    """Online RL (stage `rlhf`, tasks vader and classifier)."""
    dpo: DpoSettings = field(default_factory=DpoSettings)
    """DPO (stage `rlhf`, tasks dpo, hh and toxic)."""
    reward: RewardSettings = field(default_factory=RewardSettings)
    """The reward function (stage `rlhf`)."""
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    """Base vs tuned comparison (stage `rlhf`)."""
    divergence: DivergenceSettings = field(default_factory=DivergenceSettings)
    """Layer choice (stage `divergence`)."""
    activations: ActivationSettings = field(default_factory=ActivationSettings)
    """Captured MLP outputs (stage `activations`)."""
    sae: SaeSettings = field(default_factory=SaeSettings)
    """The sparse autoencoders (stage `sae`)."""
    features: FeatureSettings = field(default_factory=FeatureSettings)
    """Per-feature statistics (stage `features`)."""
    contrastive: ContrastiveSettings = field(default_factory=ContrastiveSettings)
    """Contrastive triples (stage `contrastive`)."""
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    """The probes (stage `probe`)."""
    explain: ExplainSettings = field(default_factory=ExplainSettings)
    """Explanations and their scores (stage `explain`)."""
    validate: ValidateSettings = field(default_factory=ValidateSettings)
    """Feature frequency and ablation (stage `validate`)."""
    crosscoder: CrosscoderSettings = field(default_factory=CrosscoderSettings)
    """One dictionary over base and tuned, tied to the reward (stage `crosscoder`)."""
    behaviour: BehaviourSettings = field(default_factory=BehaviourSettings)
    """What tuning taught the model to write, word by word (stage `behaviour`)."""
    llm: LlmSettings = field(default_factory=LlmSettings)
    """The LLM endpoint, if any (stages `contrastive` and `explain`)."""
    distributed: DistributedSettings = field(default_factory=DistributedSettings)
    """How the stages share their work among several processes (no stage's results depend on it)."""

    def __post_init__(self) -> None:
        require(self.preset in PRESETS, f"setting preset: unknown preset {self.preset!r}; "
                                        f"choose one of: {', '.join(PRESETS)}")
        require(0 <= self.seed < 2**32, f"setting seed: expected 0 <= seed < 2**32, got {self.seed}")
        require(self.task in TASKS, f"setting task: unknown task {self.task!r}; choose one of: {', '.join(TASKS)}")
        require(DEVICE.fullmatch(self.device) is not None,
                f"setting device: expected auto, cpu or cuda[:N], got {self.device!r}")
        if task_spec(self.task).reward == "classifier":
            require(bool(self.reward.classifier), "setting reward.classifier: task 'classifier' needs a model id or path")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section(self, name: str) -> dict[str, Any]:
        """One section (or top-level value) as plain data, for stage fingerprints."""
        value = getattr(self, name)
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


SECTIONS: dict[str, type] = {name: hint for name, hint in typing.get_type_hints(RunConfig).items()
                             if dataclasses.is_dataclass(hint)}
"""The sections of `RunConfig` by name, each a dataclass that checks its own fields."""


def build_config(layers: Sequence[dict[str, Any]]) -> RunConfig:
    """The config of nested override layers applied in order (preset, config file, --set).

    Each layer is checked for names and types first; then the merged values build each section,
    whose `__post_init__` checks ranges on the final values, and the `RunConfig` around them."""
    values = merge(*(typed_layer(layer, RunConfig) for layer in layers))
    sections = {name: cls(**values.pop(name, {})) for name, cls in SECTIONS.items()}
    return RunConfig(**values, **sections)


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild a stored config (as written by `RunConfig.to_dict`)."""
    return build_config([data])


@dataclass(frozen=True)
class SettingHelp:
    """One setting as `lfp settings` shows it."""

    key: str
    """Dotted name, as `--set` takes it."""
    type: str
    """Its type, or its choices."""
    default: Any
    """The default (the paper's value unless its docstring says otherwise)."""
    doc: str
    """The field's docstring."""


def settings_help(name: str | None = None) -> list[SettingHelp]:
    """Every setting (or those of one section or top-level setting), read from the dataclasses."""
    hints = typing.get_type_hints(RunConfig)
    if name is not None and name not in hints:
        raise ConfigError(f"unknown section {name!r}; choose one of: {', '.join(hints)}")
    default, top_docs = RunConfig().to_dict(), field_docs(RunConfig)
    rows = []
    for top, hint in hints.items():
        if name not in (None, top):
            continue
        if top in SECTIONS:
            docs = field_docs(hint)
            rows += [SettingHelp(f"{top}.{key}", type_text(inner), default[top][key], docs[key])
                     for key, inner in typing.get_type_hints(hint).items()]
        else:
            rows.append(SettingHelp(top, type_text(hint), default[top], top_docs[top]))
    return rows
