"""The stages of a run, in pipeline order (docs/guide.md, "What a run is"), and the tables each writes."""

from lfp_engine.run.manifest import CONFIG_TABLE, MANIFEST_TABLE

from ..stage import Stage
from . import (activations, behaviour, contrastive, crosscoder, divergence, explain, features, policy, probe, rlhf, sae,
               validate, word_report, world)

STAGES: list[Stage] = [world.STAGE, rlhf.STAGE, behaviour.STAGE, divergence.STAGE, activations.STAGE, sae.STAGE,
                       features.STAGE, contrastive.STAGE, policy.STAGE, probe.STAGE, word_report.STAGE, explain.STAGE,
                       validate.STAGE, crosscoder.STAGE]

EXPERIMENT_TABLES = {"sae_l1_sweep": "lfp sae-sweep", "sae_comparison": "lfp sae-compare"}
"""Tables written by an on-demand command rather than a stage."""


def table_writers() -> dict[str, str]:
    """Which stage first writes each table of the store (later stages may rewrite it: `explain`
    fills the explanation columns of `features`); the manifest and config tables come with any
    `lfp run`, so with its first stage."""
    writers = {MANIFEST_TABLE: STAGES[0].name, CONFIG_TABLE: STAGES[0].name}
    for stage in STAGES:
        for table in stage.tables:
            writers.setdefault(table, stage.name)
    return writers
