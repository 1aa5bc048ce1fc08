"""The stages of a run, in pipeline order (DESIGN.md, "Stages of a run")."""

from . import activations, contrastive, divergence, explain, features, probe, rlhf, sae, validate, world

STAGES = [world.STAGE, rlhf.STAGE, divergence.STAGE, activations.STAGE, sae.STAGE, features.STAGE,
          contrastive.STAGE, probe.STAGE, explain.STAGE,
          validate.STAGE]
