"""Screenshots of every dashboard page on a run, for the README and docs/guide.md (docs/screenshots/*.png).

    PYTHONPATH=. python scripts/screenshots.py --run runs/tiny [--out docs/screenshots] [--pages diffing,lab]

Serves `streamlit run app/main.py -- --run RUN` and photographs each page in headless Chromium
(tests/browser.py), at the full height of its content. The feature page shows the feature the
browser lists first (the tuned model's first dictionary, highest twin similarity); the playground
its example sentence; the lab after one generation (the relevant features ablated); the quiz at
its first question (no answer is saved). `tour` photographs each step of the Story's guided tour
(tour-1.png, tour-2.png, ...), clicking Next from the first to the last.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lfp_engine.run.store import RunStore  # noqa: E402
from tests.browser import PAGE_PATHS, chromium, full_height, open_page, settle, streamlit_app  # noqa: E402

WIDTH = 1400


def generate_in_the_lab(page) -> None:
    """The lab with its first result: the relevant features ablated on four held-out openings."""
    page.get_by_role("button", name="Generate").click()
    page.wait_for_selector('h3:has-text("Unmodified against modified")', timeout=120_000)


def start_the_quiz(page) -> None:
    """The quiz's first question, as an annotator sees it once named (nothing is answered)."""
    name = page.locator('input[aria-label="Your name"]').last
    name.fill("screenshot")
    name.press("Enter")
    page.wait_for_selector('text="Which explanation fits?"', timeout=30_000)


PREPARE = {"lab": generate_in_the_lab, "quiz": start_the_quiz}
"""What is done on a page before it is photographed."""


def first_listed_feature(run: Path) -> dict[str, str]:
    """The feature the browser lists first by default, as the feature page's query parameters."""
    row = RunStore(run).query(
        "SELECT layer, dict_size, feature FROM features WHERE model = 'tuned' AND (layer, dict_size) = "
        "(SELECT (layer, dict_size) FROM features WHERE model = 'tuned' ORDER BY layer, dict_size LIMIT 1) "
        "ORDER BY twin_cosine DESC NULLS LAST, feature LIMIT 1").iloc[0]
    return {k: str(int(row[k])) for k in ("layer", "dict_size", "feature")}


TOUR = "tour"
"""The guided tour's steps, photographed one by one (not a page of its own: the Story's `?tour=N`)."""


def photograph_tour(page, url: str, out: Path) -> list[Path]:
    """Each step of the tour as a room sees it (one 1400 x 1000 screen), from the first, clicking Next until
    it says Finish."""
    written = []
    page.set_viewport_size({"width": WIDTH, "height": 1000})
    seconds = open_page(page, f"{url}/?{TOUR}=1", timeout_ms=120_000)
    for step in range(1, 100):
        target = out / f"{TOUR}-{step}.png"
        page.screenshot(path=str(target))
        print(f"{target}  ({seconds:.2f} s to render)")
        written.append(target)
        if page.get_by_role("button", name="Finish").count():
            return written
        start = time.monotonic()
        page.get_by_role("button", name="Next").click()
        page.wait_for_function(f"() => new URL(location.href).searchParams.get('{TOUR}') === '{step + 1}'",
                               timeout=60_000)
        seconds = settle(page, 120_000) - start
    return written


def photograph(run: Path, runs_root: Path, out: Path, pages: list[str]) -> list[Path]:
    """Served from the runs folder's parent, so the sidebar names runs as `runs/<name>`."""
    written = []
    feature = "&".join(f"{k}={v}" for k, v in first_listed_feature(run).items())
    with streamlit_app(["--run", str(run), "--runs", str(runs_root)], cwd=runs_root.parent) as url, \
            chromium(WIDTH, 1000) as page:
        for name in pages:
            if name == TOUR:
                written += photograph_tour(page, url, out)
                continue
            query = f"?{feature}" if name == "feature" else ""
            page.set_viewport_size({"width": WIDTH, "height": 1000})
            seconds = open_page(page, f"{url}/{PAGE_PATHS[name]}{query}", timeout_ms=120_000)
            if name in PREPARE:
                PREPARE[name](page)
                settle(page, 120_000)
            page.set_viewport_size({"width": WIDTH, "height": full_height(page) + 40})
            settle(page)
            target = out / f"{name}.png"
            page.screenshot(path=str(target))
            print(f"{target}  ({seconds:.2f} s to render)")
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/tiny")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--pages", default=",".join([*PAGE_PATHS, TOUR]),
                        help=f"comma-separated pages to photograph (default all: {', '.join([*PAGE_PATHS, TOUR])})")
    args = parser.parse_args()
    run, out = Path(args.run).resolve(), Path(args.out).resolve()
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    unknown = sorted(set(pages) - set(PAGE_PATHS) - {TOUR})
    if unknown:
        parser.error(f"unknown pages {unknown}; pages are: {', '.join([*PAGE_PATHS, TOUR])}")
    out.mkdir(parents=True, exist_ok=True)
    photograph(run, run.parent, out, pages)


if __name__ == "__main__":
    main()
