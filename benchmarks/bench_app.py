"""How fast do the dashboard's pages load? On a real run, and on a synthetic store holding a
50,000-feature dictionary (the feature browser's worst case: every feature in one dictionary).

    PYTHONPATH=. python -m benchmarks.bench_app --run runs/tiny [--features 50000] [--browser] [--fixture]

1. Server side, Streamlit's AppTest: the script run of each page of `--run`, with the query
   cache cleared (what the first visitor after a stage finishes waits for) and with it warm (every
   later visit, page switch or widget change). Imports are done once before timing, as in a
   running server.
2. The same for the feature browser on the synthetic store: its default view, a search, a sort,
   a filter, the last page; and the feature page of one of its features.
3. With --browser, what a user waits for: headless Chromium against `streamlit run`, from the
   request to the last change on the page (tests/browser.py `open_page`), first visit and a
   reload, per page of `--run` and for the 50,000-feature browser.
4. With --fixture, (1) and (3) again on a copy of the run carrying FIXTURE probe and explain tables
   (tests/contract_fixture.py), so the pages those stages fill are timed full before they exist.
Each figure is the median of `--repeats` runs. The synthetic store is built in DuckDB SQL
(features, their examples, histograms, logits and neighbours, all made up) under benchmarks/out/.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path

import duckdb
import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "app" / "main.py"
PAGES = ["views/story.py", "views/layers.py", "views/features.py", "views/feature.py", "views/lexicon.py",
         "views/compare.py"]
WORDS = ["great", "awful", "plot", "acting", "boring", "wonderful", "the", "movie", "not", "positive", "negative",
         "scene", "ending", "music", "love", "hate"]


def synthetic_store(folder: Path, n_features: int, seed: float = 0.42) -> Path:
    """A run store with one tuned dictionary of `n_features` features, explained, with examples."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "lfp.duckdb"
    db.unlink(missing_ok=True)
    words = "[" + ", ".join(f"'{w}'" for w in WORDS) + "]"  # constants of this script, not user input
    k = len(WORDS)
    with duckdb.connect(str(db)) as con:
        con.execute("SELECT setseed(?)", [seed])
        con.execute("CREATE TABLE run_config AS SELECT 1 AS id, 'synthetic' AS preset, "
                    "'{\"task\": \"vader\", \"seed\": 0}' AS config, '' AS created_at, '0.1.0' AS lfp_version")
        con.execute("CREATE TABLE run_manifest (stage VARCHAR, status VARCHAR, fingerprint VARCHAR, settings VARCHAR, "
                    "seed BIGINT, inputs VARCHAR, outputs VARCHAR, versions VARCHAR, started_at VARCHAR, "
                    "finished_at VARCHAR, duration_s DOUBLE, error VARCHAR)")
        con.execute(f"""CREATE TABLE features AS SELECT 'tuned' AS model, 3 AS layer, ? AS dict_size, i AS feature,
            (i * 7919) % ? AS twin_feature, random() AS twin_cosine, random() > 0.9 AS is_shared,
            NULL::BIGINT AS shared_rank,
            random() * 0.2 AS density, random() * 5 AS max_activation, random() AS mean_activation,
            (random() * 10000)::BIGINT AS n_firing,
            'fires on ' || {words}[1 + i % {k}] || ' near ' || {words}[1 + (i // {k}) % {k}] || ' #' || i
                AS explanation,
            CASE WHEN i % 2 = 0 THEN 'offline' ELSE 'llm:bench' END AS explanation_source,
            random() < 0.3 AS relevance, random() AS simulation_score, random() AS detection_score
            FROM range(?) t(i)""", [n_features, n_features, n_features])
        con.execute(f"""CREATE TABLE feature_examples AS SELECT f.model, f.layer, f.dict_size, f.feature,
            CASE WHEN r < 5 THEN 'top' ELSE 'quantile' END AS kind, 1 + r % 5 AS rank,
            CASE WHEN r < 5 THEN NULL ELSE 0.2 * (1 + r % 5) END AS quantile, r AS text_id, 16 AS position,
            list_transform(range(24), lambda x: (x * 31 + r)::INTEGER) AS token_ids,
            list_transform(range(24), lambda x: ' ' || {words}[1 + (x + r) % {k}]) AS tokens,
            list_transform(range(24), lambda x: random()) AS activations, random() AS max_activation
            FROM features f, range(10) s(r)""")
        con.execute("""CREATE TABLE feature_histograms AS SELECT model, layer, dict_size, feature, b * 0.1 AS bin_left,
            (b + 1) * 0.1 AS bin_right, (random() * 100)::BIGINT AS count FROM features, range(10) s(b)""")
        con.execute(f"""CREATE TABLE feature_logits AS SELECT model, layer, dict_size, feature,
            CASE WHEN r < 5 THEN 'boost' ELSE 'suppress' END AS direction, 1 + r % 5 AS rank, r AS token_id,
            {words}[1 + r] AS token, CASE WHEN r < 5 THEN 5 - r ELSE -(r - 4) END * random() AS effect
            FROM features, range(10) s(r)""")
        con.execute("""CREATE TABLE feature_neighbors AS SELECT model, layer, dict_size, feature, 1 + r AS rank,
            (feature + 1 + r) % dict_size AS neighbor, random() AS cosine FROM features, range(5) s(r)""")
    return folder


def median_time(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def app_on(run: Path, page: str, query: dict[str, str] | None = None, runs_root: Path | None = None) -> AppTest:
    sys.argv = [str(MAIN), "--run", str(run), "--runs", str(runs_root or run.parent)]
    at = AppTest.from_file(str(MAIN), default_timeout=120).run()
    at.switch_page(page)
    if query:
        at.query_params.update(query)
    return at


def timed_run(at: AppTest, cold: bool) -> None:
    if cold:
        st.cache_data.clear()
    at.run()
    if at.exception:
        raise RuntimeError(at.exception[0].value)


def cold_and_warm(at: AppTest, repeats: int) -> tuple[float, float]:
    """Median script-run seconds with the query cache cleared, then with it warm."""
    return (median_time(lambda: timed_run(at, cold=True), repeats),
            median_time(lambda: timed_run(at, cold=False), repeats))


def server_side(run: Path, runs_root: Path, repeats: int) -> list[tuple[str, float, float]]:
    return [(page, *cold_and_warm(app_on(run, page, runs_root=runs_root), repeats)) for page in PAGES]


def browser_views(at_factory, repeats: int) -> list[tuple[str, float, float]]:
    """The feature browser's interactions on the synthetic store, cold and warm."""
    rows = []
    views = [
        ("default view (sorted by twin similarity)", lambda at: None),
        ("search 'awful'", lambda at: at.text_input(key="browser_search").set_value("awful")),
        ("sort by density, ascending", lambda at: (at.selectbox(key="browser_sort").set_value("density"),
                                                   at.toggle(key="browser_descending").set_value(False))),
        ("filter: relevant, explainer llm:bench",
         lambda at: (at.selectbox(key="browser_relevance").set_value("relevant"),
                     at.selectbox(key="browser_source").set_value("llm:bench"))),
    ]
    for name, change in views:
        at = at_factory()
        at.run()
        change(at)
        rows.append((f"feature browser: {name}", *cold_and_warm(at, repeats)))
    at = at_factory()
    at.run()
    last = [w for w in at.number_input if w.key.startswith("browser_page")][0]
    last.set_value(last.max)
    rows.append((f"feature browser: last page ({int(last.max):,})", *cold_and_warm(at, repeats)))
    return rows


def in_chromium(runs: list[Path], synthetic: Path, repeats: int) -> list[tuple[str, float, float]]:
    sys.path.insert(0, str(ROOT))
    from tests.browser import PAGE_PATHS, chromium, open_page, streamlit_app

    rows = []
    for folder, pages in [*((r, list(PAGE_PATHS.items())) for r in runs),
                          (synthetic, [("features", PAGE_PATHS["features"])])]:
        runs_root = folder.parent if folder == synthetic else runs[0].parent  # compare lists the real runs
        with streamlit_app(["--run", str(folder), "--runs", str(runs_root)]) as url, chromium() as page:
            open_page(page, f"{url}/")  # the server's first session imports everything once
            for name, path in pages:
                first = open_page(page, f"{url}/{path}")
                again = statistics.median(open_page(page, f"{url}/{path}") for _ in range(repeats))
                rows.append((f"{folder.name}: {name}", first, again))
    return rows


def table(title: str, rows: list[tuple[str, float, float]], headers: tuple[str, str]) -> str:
    lines = [f"**{title}**", "", f"| page | {headers[0]} | {headers[1]} |", "|---|---|---|"]
    lines += [f"| {name} | {cold:.2f} s | {warm:.2f} s |" for name, cold, warm in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/tiny", help="a finished run (default runs/tiny)")
    parser.add_argument("--features", type=int, default=50_000, help="features in the synthetic store")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--browser", action="store_true", help="also time page loads in headless Chromium")
    parser.add_argument("--fixture", action="store_true", help="also on a copy with FIXTURE probe/explain tables")
    args = parser.parse_args()
    # Clearing the cache outside a server warns each time that it has no runtime: expected here.
    logging.getLogger("streamlit.runtime.caching.cache_data_api").addFilter(
        lambda record: "No runtime found" not in record.getMessage())
    run = Path(args.run).resolve()
    start = time.perf_counter()
    synthetic = synthetic_store(ROOT / "benchmarks" / "out" / "app-bench" / f"synthetic-{args.features}", args.features)
    print(f"synthetic store with {args.features:,} features built in {time.perf_counter() - start:.1f} s "
          f"({(synthetic / 'lfp.duckdb').stat().st_size / 2**20:.0f} MiB)")
    app_on(run, PAGES[0]).run()  # imports and Streamlit's own start-up, outside the timings
    runs = [run]
    if args.fixture:
        sys.path.insert(0, str(ROOT))
        from tests.contract_fixture import add_contract_tables, copy_run

        fixture = ROOT / "benchmarks" / "out" / "app-bench" / "runs" / f"{run.name}-FIXTURE"
        shutil.rmtree(fixture, ignore_errors=True)
        runs.append(add_contract_tables(copy_run(run, fixture)))
    for folder in runs:
        print(table(f"Pages of {folder.name}, AppTest script run", server_side(folder, run.parent, args.repeats),
                    ("cache cleared", "cache warm")))
        print()
    rows = browser_views(lambda: app_on(synthetic, "views/features.py"), args.repeats)
    feature = app_on(synthetic, "views/feature.py", {"layer": "3", "dict_size": str(args.features),
                                                      "feature": str(args.features // 2)})
    rows.append((f"feature page (feature {args.features // 2:,})", *cold_and_warm(feature, args.repeats)))
    print(table(f"{args.features:,}-feature dictionary, AppTest script run", rows, ("cache cleared", "cache warm")))
    if args.browser:
        print()
        print(table("Headless Chromium, request to last change on the page", in_chromium(runs, synthetic, args.repeats),
                    ("first visit", "reload (median)")))


if __name__ == "__main__":
    main()
