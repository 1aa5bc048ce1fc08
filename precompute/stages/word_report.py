"""Stage `word_report`: the divergence report, word by word, and what it recovers of a planted world (issue 12).

Reads the probe stage's cross-fitted `word_values` and, where the behaviour stage counted them,
`behaviour_words`; writes `lfp_divergence` (`lfp_engine.report.divergence`) and, for worlds with
planted ground truth (`world_lexicon`), `divergence_recovery`. Tasks whose probe reads texts,
not words, have no word values: nothing is written.
"""

from __future__ import annotations

import logging

from lfp_engine.report.divergence import divergence_table, recovery_table

from ..outputs import WordReportOutputs
from ..stage import Stage, StageContext, StageResult

log = logging.getLogger("lfp")


def run(ctx: StageContext) -> StageResult:
    tables = ctx.store.tables()
    if "word_values" not in tables:
        log.info("word_report: the probe has no per-word values (a preference task); nothing to report")
        return StageResult(outputs=WordReportOutputs(n_words=0, n_divergent=0))
    behaviour = ctx.store.read("behaviour_words") if "behaviour_words" in tables else None
    report = divergence_table(ctx.store.read("word_values"), behaviour)
    out = {"lfp_divergence": report}
    recall, precision = {}, None
    if "world_lexicon" in tables:
        recovery = recovery_table(report, ctx.store.read("world_lexicon"), seed=ctx.seed)
        out["divergence_recovery"] = recovery
        probe = recovery[recovery["evidence"] == "probe"].set_index("kind")
        recall = {kind: float(v) for kind, v in probe["recall"].items() if kind != "all"}
        precision = None if probe.loc["all", "n_flagged"] == 0 else float(probe.loc["all", "precision"])
    log.info("word_report: %d of %d words divergent; recall by kind %s, precision %s", int(report["divergent"].sum()),
             len(report), recall, precision)
    return StageResult(outputs=WordReportOutputs(n_words=len(report), n_divergent=int(report["divergent"].sum()),
                                                 recall=recall, precision=precision), tables=out)


STAGE = Stage(name="word_report", run=run, sections=(), tables=("lfp_divergence", "divergence_recovery"),
              needs=("probe", "behaviour"))
