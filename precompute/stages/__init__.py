"""The stages of a run, in pipeline order (DESIGN.md, "Stages of a run")."""

from . import contrastive, divergence, rlhf, world

STAGES = [world.STAGE, rlhf.STAGE, divergence.STAGE, contrastive.STAGE]
