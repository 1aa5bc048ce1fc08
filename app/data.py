"""The dashboard's query layer: every read of a run's store goes through here.

Why one module: the store's tables are a contract (docs/store.md) and the pages should not each
hold their own idea of it. Every query is written here, values always travel as `?` parameters
(a search box's text never becomes SQL), and table or column names only ever come from this
code. The store is opened read-only with a short-lived connection per query, so a running
`lfp run` can still write between reads.

Results are cached by Streamlit per (database file, its modification time, SQL, parameters): a
stage that rewrites the store changes the mtime, so the next rerun reads fresh tables, while
page switches and widget changes reuse what was read. Large tables are filtered, sorted and
paged in SQL, so a 50,000-feature dictionary never travels to the page whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from lfp_engine.report.divergence import read_divergence_report
from lfp_engine.report.headline import Headline, read_headline, reward_metric
from lfp_engine.report.verdict import Verdict, read_verdict
from lfp_engine.run.store import RunStore
from lfp_engine.sae.keys import FeatureKey

FEATURE_SORTS = {
    "twin similarity": "twin_cosine",
    "feature index": "feature",
    "density": "density",
    "max activation": "max_activation",
    "simulation score": "simulation_score",
    "detection score": "detection_score",
}
"""Sort keys the feature browser offers (label -> column): the only column names a user's
choice can put into SQL."""

RELEVANCE = ("any", "relevant", "not relevant", "not labelled")
_RELEVANCE_SQL = {"relevant": "relevance", "not relevant": "NOT relevance", "not labelled": "relevance IS NULL"}

BROWSER_COLUMNS = ("feature", "explanation", "explanation_source", "relevance", "simulation_score",
                   "detection_score", "twin_feature", "twin_cosine", "is_shared", "density",
                   "max_activation", "n_firing")


@dataclass(frozen=True)
class FeatureQuery:
    """One view of the feature browser: a dictionary, filters, a sort order and a page."""

    model: str
    layer: int
    dict_size: int
    search: str = ""
    relevance: str = "any"
    shared_only: bool = False
    source: str | None = None
    sort: str = "twin similarity"
    descending: bool = True
    limit: int = 50
    offset: int = 0

    def where(self) -> tuple[str, list[Any]]:
        clauses = ["model = ?", "layer = ?", "dict_size = ?"]
        params: list[Any] = [self.model, self.layer, self.dict_size]
        if self.search.strip():
            # contains() matches the text literally: quotes, % and _ in a search are just characters.
            clauses.append("contains(lower(coalesce(explanation, '')), lower(?))")
            params.append(self.search.strip())
        if self.relevance != "any":
            clauses.append(_RELEVANCE_SQL[self.relevance])
        if self.shared_only:
            clauses.append("is_shared")
        if self.source is not None:
            clauses.append("explanation_source = ?")
            params.append(self.source)
        return " AND ".join(clauses), params


def _db_version(path: Path) -> tuple[int, int]:
    """Changes whenever a stage writes the store (the file or its write-ahead log)."""
    wal = path.with_name(path.name + ".wal")
    return (path.stat().st_mtime_ns if path.exists() else 0, wal.stat().st_mtime_ns if wal.exists() else 0)


@st.cache_data(show_spinner=False, max_entries=2000)
def _cached_query(db: str, version: tuple[int, int], sql: str, params: tuple[Any, ...]) -> pd.DataFrame:
    """`version` is only part of the cache key: a rewritten store is read afresh."""
    return RunStore(Path(db).parent).query(sql, list(params))


@st.cache_data(show_spinner=False, max_entries=64)
def _cached_headline(db: str, version: tuple[int, int]) -> Headline:
    """`version` is only part of the cache key: a rewritten store is read afresh."""
    return read_headline(RunStore(Path(db).parent))


@st.cache_data(show_spinner=False, max_entries=64)
def _cached_verdict(db: str, version: tuple[int, int]) -> Verdict:
    """`version` is only part of the cache key: a rewritten store is read afresh."""
    return read_verdict(RunStore(Path(db).parent))


class RunData:
    """Read-only, cached access to one run's store, in the terms the pages speak."""

    def __init__(self, root: Path | str):
        self.store = RunStore(root)
        self.root = self.store.paths.root

    def _q(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> pd.DataFrame:
        return _cached_query(str(self.store.path), _db_version(self.store.path), sql, tuple(params))

    # -- the run ----------------------------------------------------------------------------

    def tables(self) -> set[str]:
        return set(self._q("SELECT table_name FROM information_schema.tables")["table_name"])

    def has(self, table: str) -> bool:
        """A table is there and holds rows (an empty table tells a user no more than a missing one)."""
        if table not in self.tables():
            return False
        return bool(self._q(f"SELECT EXISTS (SELECT 1 FROM {table}) AS found")["found"].iloc[0])

    def config(self) -> tuple[str, dict[str, Any]]:
        """(preset, settings) the run was made with."""
        frame = self._q("SELECT preset, config FROM run_config ORDER BY id LIMIT 1")
        return str(frame["preset"].iloc[0]), json.loads(frame["config"].iloc[0])

    def stage_outputs(self) -> dict[str, dict[str, Any]]:
        """The headline outputs each finished stage recorded in the manifest."""
        frame = self._q("SELECT stage, outputs FROM run_manifest WHERE status = 'done'")
        return {row.stage: json.loads(row.outputs) if row.outputs else {} for row in frame.itertuples()}

    # -- world and tuning -------------------------------------------------------------------

    def lexicon_extremes(self, n: int) -> pd.DataFrame:
        """The world's n most positive and n most negative words, for a plain example of the reward."""
        return self._q(
            "(SELECT word, lexicon_value FROM world_lexicon ORDER BY lexicon_value DESC, word LIMIT ?) UNION ALL "
            "(SELECT word, lexicon_value FROM world_lexicon ORDER BY lexicon_value ASC, word LIMIT ?)", [n, n])

    def example_words(self, n_paid: int = 2, n_penalised: int = 1) -> pd.DataFrame:
        """Words to show what the reward pays: the most paid and the most penalised words the world uses
        the way the reward scores them (its ordinary words, where it planted kinds)."""
        ordinary = "WHERE kind = 'ordinary'" if "kind" in self._q("SELECT * FROM world_lexicon LIMIT 0").columns else ""
        return self._q(
            f"(SELECT word, lexicon_value FROM world_lexicon {ordinary} ORDER BY lexicon_value DESC, word LIMIT ?) "
            f"UNION ALL (SELECT word, lexicon_value FROM world_lexicon {ordinary} ORDER BY lexicon_value ASC, word "
            "LIMIT ?)", [n_paid, n_penalised])

    def word_kinds(self) -> dict[str, str]:
        """Each word's planted kind (`world_lexicon.kind`); empty where the world planted none."""
        if "world_lexicon" not in self.tables() or "kind" not in self._q("SELECT * FROM world_lexicon LIMIT 0").columns:
            return {}
        frame = self._q("SELECT word, kind FROM world_lexicon")
        return dict(zip(frame["word"], frame["kind"]))

    def word_examples(self) -> pd.DataFrame:
        """One text per word of the word triples, the first triple that substitutes it: word, text and
        the word's character span in it (start, end)."""
        return self._q(
            "SELECT word, arg_min(text, triple_id) AS text, arg_min(start_, triple_id) AS start, "
            "arg_min(end_, triple_id) AS \"end\" FROM ("
            "SELECT triple_id, word_positive AS word, text_positive AS text, start_positive AS start_, "
            "end_positive AS end_ FROM triples WHERE kind = 'word' UNION ALL "
            "SELECT triple_id, word_negative, text_negative, start_negative, end_negative FROM triples "
            "WHERE kind = 'word') GROUP BY word ORDER BY word")

    def world_lexicon_summary(self) -> pd.DataFrame:
        kind = "kind" if "kind" in self._q("SELECT * FROM world_lexicon LIMIT 0").columns else "'ordinary' AS kind"
        return self._q(f"SELECT {kind}, polarity, heldout, count(*) AS words, sum(corpus_count) AS corpus_occurrences "
                       "FROM world_lexicon GROUP BY ALL ORDER BY kind, polarity, heldout")

    def rlhf_rewards(self) -> pd.DataFrame:
        return self._q("SELECT * FROM rlhf_rewards ORDER BY metric, model = 'tuned'")

    def rlhf_samples(self) -> pd.DataFrame:
        return self._q("SELECT * FROM rlhf_samples")

    def rlhf_training_log(self) -> pd.DataFrame:
        return self._q("SELECT * FROM rlhf_training_log ORDER BY step")

    # -- layers and SAEs --------------------------------------------------------------------

    def layer_divergence(self) -> pd.DataFrame:
        return self._q("SELECT * FROM layer_divergence ORDER BY layer")

    def sae_metrics(self, model: str) -> pd.DataFrame:
        return self._q("SELECT * FROM sae_metrics WHERE model = ? ORDER BY layer, dict_size", [model])

    def shared_summary(self, model: str) -> pd.DataFrame:
        return self._q("SELECT * FROM shared_features_summary WHERE model = ? ORDER BY layer, dict_size", [model])

    def sae_l1_sweep(self) -> pd.DataFrame:
        return self._q("SELECT * FROM sae_l1_sweep ORDER BY l1_coefficient, layer, dict_size")

    def sae_comparison(self) -> pd.DataFrame:
        return self._q("SELECT * FROM sae_comparison ORDER BY layer_choice, architecture, layer, dict_size")

    # -- features ---------------------------------------------------------------------------

    def feature_models(self) -> list[str]:
        """Models with features, the tuned model (the one the method studies) first."""
        frame = self._q("SELECT DISTINCT model FROM features ORDER BY model = 'tuned' DESC, model")
        return list(frame["model"])

    def dictionaries(self, model: str) -> pd.DataFrame:
        return self._q("SELECT layer, dict_size, count(*) AS n_features, count(explanation) AS n_explained "
                       "FROM features WHERE model = ? GROUP BY layer, dict_size ORDER BY layer, dict_size", [model])

    def explanation_sources(self, model: str, layer: int, dict_size: int) -> list[str]:
        frame = self._q("SELECT DISTINCT explanation_source FROM features WHERE model = ? AND layer = ? "
                        "AND dict_size = ? AND explanation_source IS NOT NULL ORDER BY 1", [model, layer, dict_size])
        return list(frame["explanation_source"])

    def count_features(self, query: FeatureQuery) -> int:
        """How many features of the dictionary pass the query's search and filters."""
        where, params = query.where()
        return int(self._q(f"SELECT count(*) AS n FROM features WHERE {where}", params)["n"].iloc[0])

    def browse_features(self, query: FeatureQuery) -> pd.DataFrame:
        """One page of a dictionary's features, filtered, sorted and cut in SQL."""
        where, params = query.where()
        order = f"{FEATURE_SORTS[query.sort]} {'DESC' if query.descending else 'ASC'} NULLS LAST, feature"
        return self._q(f"SELECT {', '.join(BROWSER_COLUMNS)} FROM features WHERE {where} ORDER BY {order} "
                       "LIMIT ? OFFSET ?", params + [query.limit, query.offset])

    def feature(self, key: FeatureKey) -> pd.Series | None:
        frame = self._q("SELECT * FROM features WHERE model = ? AND layer = ? AND dict_size = ? AND feature = ?",
                        list(key))
        return None if frame.empty else frame.iloc[0]

    def relevance_detail(self, key: FeatureKey) -> str | None:
        """How the feature's relevance label was reached (offline: the lexicon correlation and its
        figures; with an LLM: the judge's answer), or None where nothing was recorded."""
        if "feature_explanations" not in self.tables():
            return None
        frame = self._q("SELECT relevance_detail FROM feature_explanations WHERE model = ? AND layer = ? "
                        "AND dict_size = ? AND feature = ?", list(key))
        detail = None if frame.empty else frame["relevance_detail"].iloc[0]
        return None if detail is None or pd.isna(detail) else str(detail)

    def feature_examples(self, key: FeatureKey) -> pd.DataFrame:
        return self._q("SELECT kind, rank, quantile, text_id, position, tokens, activations, peak_index, "
                       "max_activation FROM feature_examples WHERE model = ? AND layer = ? AND dict_size = ? AND feature = ? "
                       "ORDER BY kind = 'quantile', quantile DESC, rank", list(key))

    def feature_histogram(self, key: FeatureKey) -> pd.DataFrame:
        return self._q("SELECT bin_left, bin_right, count FROM feature_histograms "
                       "WHERE model = ? AND layer = ? AND dict_size = ? AND feature = ? ORDER BY bin_left",
                       list(key))

    def feature_logits(self, key: FeatureKey) -> pd.DataFrame:
        return self._q("SELECT direction, rank, token, effect FROM feature_logits "
                       "WHERE model = ? AND layer = ? AND dict_size = ? AND feature = ? ORDER BY direction, rank",
                       list(key))

    def feature_neighbors(self, key: FeatureKey) -> pd.DataFrame:
        """The nearest features of the same dictionary, with what each is said to mean."""
        return self._q(
            "SELECT n.rank, n.neighbor, n.cosine, f.explanation, f.density FROM feature_neighbors n "
            "LEFT JOIN features f ON f.model = n.model AND f.layer = n.layer AND f.dict_size = n.dict_size "
            "AND f.feature = n.neighbor WHERE n.model = ? AND n.layer = ? AND n.dict_size = ? AND n.feature = ? "
            "ORDER BY n.rank", list(key))

    def probe_dictionaries(self) -> pd.DataFrame:
        return self._q("SELECT layer, dict_size, count(*) AS n_inputs FROM probe_weights GROUP BY ALL ORDER BY ALL")

    def probe_weight(self, key: FeatureKey) -> pd.Series | None:
        """The probe's weight on a tuned-model feature, its rank by magnitude among all the probe's
        inputs, and how many inputs there are (None when the feature is not an input)."""
        frame = self._q(
            "SELECT weight, weight_rank, n_inputs FROM (SELECT layer, dict_size, feature, weight, "
            "rank() OVER (ORDER BY abs(weight) DESC) AS weight_rank, count(*) OVER () AS n_inputs "
            "FROM probe_weights) WHERE layer = ? AND dict_size = ? AND feature = ?",
            [key.layer, key.dict_size, key.feature])
        return None if frame.empty else frame.iloc[0]

    # -- the probe against the lexicon ------------------------------------------------------

    def probe_metrics(self) -> pd.DataFrame:
        return self._q("SELECT * FROM probe_metrics ORDER BY variant = 'sae' DESC, variant, subset, metric")

    def probe_metric(self, variant: str, subset: str, metric: str) -> pd.Series | None:
        frame = self._q("SELECT * FROM probe_metrics WHERE variant = ? AND subset = ? AND metric = ?",
                        [variant, subset, metric])
        return None if frame.empty else frame.iloc[0]

    def lexicon_comparison(self, split: str | None = None, search: str = "") -> pd.DataFrame:
        """Per word: the probe's value against the lexicon's; `heldout` when the world says so."""
        clauses, params = ["TRUE"], []
        if split is not None:
            clauses.append("c.split = ?")
            params.append(split)
        if search.strip():
            clauses.append("contains(lower(c.word), lower(?))")
            params.append(search.strip())
        heldout = "w.heldout" if "world_lexicon" in self.tables() else "CAST(NULL AS BOOLEAN)"
        join = "LEFT JOIN world_lexicon w ON w.word = c.word" if "world_lexicon" in self.tables() else ""
        return self._q(f"SELECT c.*, {heldout} AS heldout FROM lexicon_comparison c {join} "
                       f"WHERE {' AND '.join(clauses)} ORDER BY c.lexicon_value DESC, c.word", params)

    def word_values(self) -> pd.DataFrame:
        """Every word's cross-fitted value per model, with its interval."""
        return self._q("SELECT * FROM word_values ORDER BY model DESC, lexicon_value DESC, word")

    def divergence_report(self) -> pd.DataFrame:
        """The divergence report, ranked (`lfp_divergence`; before the word_report stage has run,
        computed from `word_values`), with each word's planted kind where the world has one."""
        report = read_divergence_report(self.store)
        if report is None:
            return pd.DataFrame()
        if "world_lexicon" in self.tables():
            truth = self._q("SELECT word, kind FROM world_lexicon")
            report = report.merge(truth, on="word", how="left")
        return report

    def divergence_recovery(self) -> pd.DataFrame:
        return self._q("SELECT * FROM divergence_recovery ORDER BY lens DESC, kind")

    def flag_calibration(self) -> pd.DataFrame:
        return self._q("SELECT * FROM flag_calibration ORDER BY lens, model DESC")

    def policy_metrics(self) -> pd.DataFrame:
        return self._q("SELECT * FROM policy_metrics ORDER BY subset, metric")

    def policy_values(self) -> pd.DataFrame:
        """Every word's policy value with the reward's own difference on the same triples."""
        return self._q("SELECT * FROM policy_values ORDER BY lexicon_value DESC, word")

    def behaviour_kinds(self) -> pd.DataFrame:
        return self._q("SELECT * FROM behaviour_kinds ORDER BY kind, polarity")

    def behaviour_examples(self, kind: str, polarity: str, n: int = 3) -> list[str]:
        """The words of a planted group the base model wrote most (the examples a sentence names)."""
        return self._q("SELECT word FROM behaviour_words WHERE kind = ? AND polarity = ? ORDER BY base_count DESC, "
                       "word LIMIT ?", [kind, polarity, n])["word"].tolist()

    def probe_pca(self) -> pd.DataFrame:
        return self._q("SELECT * FROM probe_pca ORDER BY triple_id, element")

    # -- explanations and their validation -------------------------------------------------

    def explained_features(self, model: str) -> pd.DataFrame:
        """layer, dict_size, feature, explanation, relevance of the model's explained features."""
        return self._q("SELECT layer, dict_size, feature, explanation, relevance FROM features "
                       "WHERE model = ? AND explanation IS NOT NULL ORDER BY layer, dict_size, feature", [model])

    def feature_frequency(self) -> pd.DataFrame:
        """Groups in the stored order (relevant, matched_shared, all), then the test row."""
        return self._q("SELECT * FROM feature_frequency ORDER BY rowid")

    def ablation_results(self) -> pd.DataFrame:
        """Conditions in the stored order: none, each against none, then relevant against random."""
        return self._q("SELECT * FROM ablation_results ORDER BY rowid")

    def ablation_draws(self) -> pd.DataFrame:
        return self._q("SELECT * FROM ablation_draws ORDER BY draw")

    def ablation_samples(self) -> pd.DataFrame:
        return self._q("SELECT * FROM ablation_samples")

    def explanation_summary(self) -> pd.DataFrame:
        return self._q("SELECT * FROM explanation_summary ORDER BY model = 'tuned' DESC, source")

    def annotation_questions(self) -> pd.DataFrame:
        return self._q("SELECT * FROM annotation_questions ORDER BY question_id")

    def annotations(self) -> pd.DataFrame:
        """Every answer of the quiz so far (none when the table is missing: no answer saved yet)."""
        if "annotations" not in self.tables():
            return pd.DataFrame(columns=["question_id", "annotator", "choice", "is_correct", "chose_none",
                                         "created_at"])
        return self._q("SELECT * FROM annotations ORDER BY created_at")

    # -- what tuning changed: the crosscoder ------------------------------------------------

    def crosscoder_metrics(self) -> pd.DataFrame:
        return self._q("SELECT * FROM crosscoder_metrics ORDER BY layer, model")

    def crosscoder_latents(self) -> pd.DataFrame:
        """Every latent of every layer's crosscoder (a few thousand rows at most)."""
        return self._q("SELECT * FROM crosscoder_latents ORDER BY layer, feature")

    def crosscoder_top(self) -> pd.DataFrame:
        """The top latents (the tuned-only ones; when tuning created none, the latents most tied to the
        reward), strongest link first, with their ablation (if any) and their control's."""
        ablation = "crosscoder_ablation" in self.tables()
        joined = ("LEFT JOIN crosscoder_ablation a ON a.\"group\" = 'top' AND a.layer = l.layer AND "
                  "a.feature = l.feature LEFT JOIN crosscoder_ablation c ON c.\"group\" = 'control' AND "
                  "c.layer = l.layer AND c.control_for = l.feature" if ablation else "")
        effects = ("a.mean_difference AS ablation_effect, a.ci_low AS ablation_ci_low, a.ci_high AS ablation_ci_high, "
                   "a.p_value AS ablation_p, c.feature AS control_feature, c.mean_difference AS control_effect, "
                   "c.ci_low AS control_ci_low, c.ci_high AS control_ci_high" if ablation else
                   "CAST(NULL AS DOUBLE) AS ablation_effect, CAST(NULL AS DOUBLE) AS ablation_ci_low, "
                   "CAST(NULL AS DOUBLE) AS ablation_ci_high, CAST(NULL AS DOUBLE) AS ablation_p, "
                   "CAST(NULL AS BIGINT) AS control_feature, CAST(NULL AS DOUBLE) AS control_effect, "
                   "CAST(NULL AS DOUBLE) AS control_ci_low, CAST(NULL AS DOUBLE) AS control_ci_high")
        return self._q(f"SELECT l.*, {effects} FROM crosscoder_latents l {joined} "
                       "WHERE l.top_rank IS NOT NULL ORDER BY l.top_rank")

    def crosscoder_examples(self, layer: int, dict_size: int, feature: int) -> pd.DataFrame:
        return self._q("SELECT kind, rank, quantile, text_id, tokens, activations, peak_index, max_activation "
                       "FROM crosscoder_examples WHERE layer = ? AND dict_size = ? AND feature = ? "
                       "ORDER BY kind = 'quantile', quantile DESC, rank", [layer, dict_size, feature])

    def crosscoder_probe_metrics(self) -> pd.DataFrame:
        """The probe on crosscoder codes beside the paper's probe, on the test split."""
        paper = ("UNION ALL SELECT * FROM probe_metrics WHERE variant = 'sae' AND subset LIKE 'test%'"
                 if "probe_metrics" in self.tables() else "")
        return self._q(f"SELECT * FROM (SELECT * FROM crosscoder_probe_metrics WHERE subset LIKE 'test%' {paper}) "
                       "ORDER BY metric, subset, variant")

    # -- a run at a glance ------------------------------------------------------------------

    def reward_metric(self) -> str | None:
        """The reward this run's task is about (`lfp_engine.report.headline.reward_metric`)."""
        if not self.has("rlhf_rewards"):
            return None
        return reward_metric(self.config()[1].get("task", ""), self.rlhf_rewards()["metric"])

    def headline(self) -> Headline:
        """The numbers two runs are compared on; a value is None when its stage has not run."""
        return _cached_headline(str(self.store.path), _db_version(self.store.path))

    def verdict(self) -> Verdict:
        """The run's answers (`lfp_engine.report.verdict`), exactly as `lfp report` prints them."""
        return _cached_verdict(str(self.store.path), _db_version(self.store.path))
