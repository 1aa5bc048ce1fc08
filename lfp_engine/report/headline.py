"""A run at a glance: which reward its task is about, and the numbers two runs are compared on.

Read from the store, so the dashboard (Story, Compare runs) and the command line (`lfp status`)
take the same numbers from the same place; a number is None when its stage has not run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from lfp_engine.report.formatting import num
from lfp_engine.run.manifest import read_config, read_manifest
from lfp_engine.run.store import RunStore
from lfp_engine.run.tasks import TASKS


def reward_metric(task: str, measured: Sequence[str]) -> str | None:
    """The reward a task is about, among the metrics the rlhf stage measured: the one tuning optimised
    (RL) or that judges the tuned model (DPO), else the preference margin, else whatever was measured."""
    measured = list(dict.fromkeys(measured))
    if not measured:
        return None
    spec = TASKS.get(task)
    preferred = ([f"{spec.reward}_reward"] if spec is not None else []) + ["preference_margin"]
    return next((m for m in preferred if m in measured), measured[0])


@dataclass(frozen=True)
class Headline:
    """The numbers a run is compared on (the Compare runs page, `lfp status`)."""

    preset: str
    task: str | None
    seed: int | None
    reward_metric: str | None = None
    reward_base: float | None = None
    reward_tuned: float | None = None
    reward_difference: float | None = None
    reward_ci_low: float | None = None
    reward_ci_high: float | None = None
    reward_p_value: float | None = None
    kl_to_base: float | None = None
    chosen_layers: str | None = None
    sae_mean_variance_explained: float | None = None
    sae_mean_l0: float | None = None
    sae_mean_loss_recovered: float | None = None
    """Over the tuned model's dictionaries that have one (`sae_n_loss_recovered` of `sae_n_dictionaries`)."""
    sae_n_loss_recovered: int | None = None
    sae_n_dictionaries: int | None = None
    probe_kendall_tau: float | None = None
    probe_kendall_tau_ci_low: float | None = None
    probe_kendall_tau_ci_high: float | None = None
    probe_kendall_tau_p_value: float | None = None
    probe_accuracy: float | None = None
    probe_accuracy_ci_low: float | None = None
    probe_accuracy_ci_high: float | None = None
    probe_accuracy_p_value: float | None = None

    @property
    def sae_loss_recovered(self) -> str | None:
        """The mean loss recovered in words, saying over how many dictionaries it is taken (a dictionary
        whose layer costs the model almost nothing to delete has none: `sae.metrics.LossRecovered`)."""
        n, of, mean = self.sae_n_loss_recovered, self.sae_n_dictionaries, self.sae_mean_loss_recovered
        if n is None or of is None:  # a run whose sae stage predates the count
            return None if mean is None else num(mean)
        if mean is None:
            return f"none of {of} dictionaries: zeroing their layers barely changes the loss"
        left_out = f"; {of - n} left out: zeroing their layers barely changes the loss" if n < of else ""
        return f"{num(mean)} (mean over {n} of {of} dictionaries{left_out})"


def _table(store: RunStore, name: str) -> pd.DataFrame | None:
    return store.read(name) if name in store.tables() else None


def read_headline(store: RunStore) -> Headline:
    preset, config = read_config(store) or ("?", {})
    values: dict = {"preset": preset, "task": config.get("task"), "seed": config.get("seed")}
    rewards = _table(store, "rlhf_rewards")
    if rewards is not None and not rewards.empty:
        metric = reward_metric(config.get("task", ""), rewards["metric"])
        by_model = rewards[rewards["metric"] == metric].set_index("model")
        values["reward_metric"] = metric
        values |= {f"reward_{model}": float(by_model.loc[model, "mean"]) for model in by_model.index}
        if "tuned" in by_model.index:
            tuned = by_model.loc["tuned"]
            values |= {"reward_difference": tuned["mean_difference"], "reward_ci_low": tuned["ci_low"],
                       "reward_ci_high": tuned["ci_high"], "reward_p_value": tuned["p_value"],
                       "kl_to_base": tuned["kl_to_base"]}
    divergence = _table(store, "layer_divergence")
    if divergence is not None and not divergence.empty:
        values["chosen_layers"] = ", ".join(str(v) for v in sorted(divergence.loc[divergence["chosen"], "layer"]))
    sae = read_manifest(store).get("sae")
    if sae is not None and sae.status == "done":
        values |= {f"sae_{k}": sae.outputs[k] for k in ("mean_variance_explained", "mean_l0", "mean_loss_recovered",
                                                          "n_loss_recovered") if k in sae.outputs}
        values["sae_n_dictionaries"] = sae.outputs.get("n_saes")
    metrics = _table(store, "probe_metrics")
    if metrics is not None:
        for name in ("kendall_tau", "accuracy"):
            rows = metrics[(metrics["variant"] == "sae") & (metrics["subset"] == "test") & (metrics["metric"] == name)]
            if not rows.empty:
                row = rows.iloc[0]
                values |= {f"probe_{name}": row["value"], f"probe_{name}_ci_low": row["ci_low"],
                           f"probe_{name}_ci_high": row["ci_high"], f"probe_{name}_p_value": row["p_value"]}
    return Headline(**values)
