"""What the latents tuning created fire on, in words: the explain step (paper 3.4) on crosscoder latents.

The latents a reader opens are explained the way the explain stage explains the paper's SAE
features (`explain/evidence.py`, `explain/explainer.py`): top and quantile windows from the
crosscoder's examples beside quiet windows of held-out text, offline when no LLM endpoint is
configured (every tuned-only latent and the top ones by reward), else by the LLM (the top ones
only). Relevance is the explainer's label against the task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lfp_engine.diffing.inputs import DiffingInputs
from lfp_engine.explain.evidence import dictionary_evidence
from lfp_engine.explain.explainer import explain_offline, explain_with_llm, records_frame
from lfp_engine.explain.llm import Endpoint, ResponseCache, Usage
from lfp_engine.explain.settings import ExplainSettings
from lfp_engine.run.seeding import derive_seed
from lfp_engine.run.store import RunStore
from lfp_engine.run.tasks import TaskSpec
from lfp_engine.tuning.lexicon import vader_lexicon


def explain_latents(inputs: DiffingInputs, latents: pd.DataFrame, examples: pd.DataFrame, settings: ExplainSettings,
                    task: TaskSpec, endpoint: Endpoint | None, store: RunStore) -> pd.DataFrame:
    """`latents` (ranked: with top_rank) with explanation, explanation_source and relevance filled for
    the tuned-only latents and the top ones by reward (with an LLM the top ones only), from their
    `examples` (`crosscoder_examples` rows); LLM answers are cached in `store`'s explanation cache."""
    chosen = latents[(latents["tag"] == "tuned-only") | latents["top_rank"].notna()]
    if endpoint is not None:
        chosen = chosen[chosen["top_rank"].notna()]
    rng = np.random.default_rng(derive_seed(inputs.seed, "crosscoder explanations"))
    grouped = {(("crosscoder",) + tuple(k)): g for k, g in examples.groupby(["layer", "dict_size", "feature"])}
    width = inputs.features.context_before + inputs.features.context_after + 1
    evidence = []
    for crosscoder in inputs.crosscoders:
        rows = chosen[chosen["layer"] == crosscoder.layer]
        if not rows.empty:
            evidence += dictionary_evidence("crosscoder", crosscoder.layer, crosscoder.module, inputs.evaluation, rows,
                                            grouped, inputs.vocab, width, settings.n_windows, settings.n_quiet,
                                            settings.shown_fraction, rng, inputs.device)
    if endpoint is None:
        records = explain_offline(evidence, vader_lexicon(), task.reward in ("vader", "classifier"),
                                  settings.relevance_min_r, settings.relevance_max_p, rng)
    else:
        records = explain_with_llm(evidence, endpoint, ResponseCache(store),
                                   settings.task_description or task.description, Usage(), rng)
    frame = records_frame(records)[["layer", "feature", "explanation", "source", "relevance"]]
    return latents.merge(frame.rename(columns={"source": "explanation_source"}), on=["layer", "feature"], how="left")
