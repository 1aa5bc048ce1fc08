"""Stage `word_report`: the divergence report, word by word, through both lenses, and what it recovers of a
planted world (issues 12, 19).

Reads the probe stage's cross-fitted `word_values`, the policy stage's `policy_values` and, where the
behaviour stage counted them, `behaviour_words`; writes `lfp_divergence` (`lfp_engine.report.divergence`)
and, for worlds with planted ground truth (`world_lexicon`), `divergence_recovery`, each lens scored by
what it should find; and `flag_calibration`, the flag's rule on null words (`null_word_values`). Tasks whose probe reads texts, not words, have no word values: nothing is written.
"""

from __future__ import annotations

import logging

import numpy as np

from lfp_engine.report.divergence import calibration_table, divergence_table, recovery_table

from ..outputs import WordReportOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def run(ctx: StageContext) -> StageResult:
    tables = ctx.store.tables()
    if "word_values" not in tables:
        log.info("word_report: the probe has no per-word values (a preference task); nothing to report")
        return StageResult(outputs=WordReportOutputs(n_words=0, n_divergent=0))
    optional = {name: ctx.store.read(name) if name in tables else None for name in ("behaviour_words", "policy_values")}
    report = divergence_table(ctx.store.read("word_values"), optional["behaviour_words"], optional["policy_values"])
    out = {"lfp_divergence": report}
    if "null_word_values" in tables:
        out["flag_calibration"] = calibration = calibration_table(ctx.store.read("null_word_values"))
        for r in calibration.itertuples():
            log.info("word_report: the flag on %d null words (%s, %s model) fires at %.3f (95%% CI %.3f to %.3f; "
                     "nominal %.2f); %d flagged", r.n_words, r.null, r.model, r.rate, r.rate_ci_low, r.rate_ci_high,
                     r.nominal, r.n_flagged)
    recall, precision = {}, {}
    if "world_lexicon" in tables:
        recovery = recovery_table(report, ctx.store.read("world_lexicon"), seed=ctx.seed)
        out["divergence_recovery"] = recovery
        for r in recovery.itertuples():
            if r.kind != "all":
                recall[f"{r.lens}_{r.kind}"] = float(r.recall)
            elif np.isfinite(r.precision):
                precision[r.lens] = float(r.precision)
    outputs = WordReportOutputs(n_words=len(report), n_divergent=int(report["divergent"].sum()),
                                n_policy_divergent=int(report["policy_divergent"].sum()), recall=recall,
                                precision=precision)
    log.info("word_report: %d of %d words read against the reward inside the model, %d learned against it; recall "
             "%s, precision %s", outputs.n_divergent, len(report), outputs.n_policy_divergent,
             {k: round(v, 2) for k, v in recall.items()}, {k: round(v, 2) for k, v in precision.items()})
    return StageResult(outputs=outputs, tables=out)


STAGE = Stage(name="word_report", run=run, version=2, sections=(),
              tables=("lfp_divergence", "divergence_recovery", "flag_calibration"),
              needs=("probe", "behaviour", "policy"))
