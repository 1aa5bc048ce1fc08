"""The dashboard in a real browser: `streamlit run app/main.py` served on a free port, driven by
headless Chromium (Debian's package, through Playwright's Python client).

Every page renders without an exception on a run carrying FIXTURE probe/explain tables
(tests/contract_fixture.py); every page opens on its title, nothing rendered above it; stored
markup shows as text and runs nothing; clicking a row of the feature browser opens that feature.
Skips only where Chromium or Playwright is not installed (`bash scripts/install.sh --test`
installs both).
"""

from __future__ import annotations

import re

import pytest

from lfp_engine.run.store import RunStore

from .browser import (PAGE_PATHS, chromium, chromium_path, first_chart_top, open_page, opening_text, settle,
                      streamlit_app, visible_text)
from .contract_fixture import MARKUP_EXPLANATION, MARKUP_TOKEN
from .plain_words import plain_problems

pytestmark = pytest.mark.slow
pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: bash scripts/install.sh --test")
if chromium_path() is None:
    pytest.skip("Chromium is not installed and could not be: apt-get install -y chromium", allow_module_level=True)

TITLES = {"story": "Did the model learn the feedback we gave it?", "layers": "Layers",
          "features": "Feature browser", "feature": "Feature", "lexicon": "Lexicon: the reward as the model learned it",
          "compare": "Compare runs", "diffing": "What tuning changed", "playground": "Implicit reward playground",
          "lab": "Ablation and steering lab", "validation": "Validation", "quiz": "Explanation quiz"}
LIVE_PAGES = ("playground", "lab", "validation", "quiz")
"""Pages that load the run's models: tested on a whole copy of a run (the fixture runs hold only a store)."""


def test_every_page_renders_and_stored_markup_stays_text(app_runs):
    run = app_runs["fixture"]
    with streamlit_app(["--run", str(run), "--runs", str(run.parent)]) as url, chromium() as page:
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        for name, path in PAGE_PATHS.items():
            if name in LIVE_PAGES:
                continue
            open_page(page, f"{url}/{path}")
            assert page.locator('[data-testid="stMain"] h1').first.inner_text().strip() == TITLES[name]
            assert page.locator('[data-testid="stException"]').count() == 0, name
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0, name
            assert page.locator('[data-testid="stVegaLiteChart"], [data-testid="stDataFrame"], '
                                '[data-testid="stTable"]').count() > 0, name

        open_page(page, f"{url}/{PAGE_PATHS['feature']}")
        assert page.get_by_text(MARKUP_TOKEN, exact=False).count() >= 1  # the token, shown as characters
        open_page(page, f"{url}/{PAGE_PATHS['feature']}?feature=1")  # the URL names the feature
        assert page.get_by_text(MARKUP_EXPLANATION, exact=False).count() == 1
        assert page.locator('[data-testid="stMain"] b').count() == 0  # '<b>bold</b>' was not made bold
        assert dialogs == [] and errors == []


FIRST_ELEMENT = """() => {
  const shown = Array.from(document.querySelectorAll('[data-testid="stMain"] [data-testid="stElementContainer"]'))
    .filter(e => e.getBoundingClientRect().height > 0);
  if (shown.length === 0) return null;
  const title = shown[0].querySelector('h1');
  return title ? title.innerText.trim() : 'not a title: ' + shown[0].innerText.trim().slice(0, 200);
}"""
"""The heading text of the first element the main area shows, or what stands there instead."""


def test_every_page_opens_on_its_title(live_app_run):
    """Nothing is rendered above a page's title: Streamlit writes a page script's bare strings onto
    the page (an attribute docstring once stood above the Lexicon page's title), and the static
    check in test_architecture.py sees only the scripts, not what they draw. One server, every page,
    on a whole copy of the micro run (the live pages load its models)."""
    with streamlit_app(["--run", str(live_app_run)]) as url, chromium() as page:
        first = {}
        for name, path in PAGE_PATHS.items():
            open_page(page, f"{url}/{path}", timeout_ms=120_000)
            first[name] = page.evaluate(FIRST_ELEMENT)
        assert first == {name: TITLES[name] for name in PAGE_PATHS}


def click_first_row(page, grid) -> None:
    """Tick the selection cell of a dataframe's first row (the grid is a canvas; its header ~35 px)."""
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + 35 + 17)


def test_clicking_rows_opens_features(app_runs):
    run = app_runs["fixture"]
    with streamlit_app(["--run", str(run)]) as url, chromium() as page:
        open_page(page, f"{url}/{PAGE_PATHS['features']}")
        click_first_row(page, page.locator('[data-testid="stDataFrame"]').first)
        page.wait_for_url(re.compile(r"/feature(\?|$)"), timeout=30_000)
        settle(page)
        header = page.locator('[data-testid="stMain"] h2').first.inner_text()
        match = re.match(r"Feature (\d+) · layer (\d+) · (\d+)-feature dictionary · tuned", header)
        assert match, header

        feature, layer, size = (int(v) for v in match.groups())
        neighbor = RunStore(run).read("feature_neighbors", "model = 'tuned' AND layer = ? AND dict_size = ? AND "
                                      "feature = ? AND rank = 1", [layer, size, feature])["neighbor"].iloc[0]
        click_first_row(page, page.locator('[data-testid="stDataFrame"]').last)  # the nearest features
        page.wait_for_function(f"() => document.querySelector('[data-testid=\"stMain\"] h2')"
                               f".innerText.startsWith('Feature {neighbor} ')", timeout=30_000)
        settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0


def test_live_pages_score_text_ablate_and_store_a_quiz_answer(live_app_run):
    """Type a sentence, find its tokens scored; run an ablation; answer a quiz question, find it stored."""
    with streamlit_app(["--run", str(live_app_run)]) as url, chromium() as page:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        open_page(page, f"{url}/{PAGE_PATHS['playground']}", timeout_ms=120_000)
        box = page.locator('textarea[aria-label="Text"]').last
        box.fill("An utterly delightful film with a dreadful ending")
        box.press("Control+Enter")
        page.wait_for_function("() => Array.from(document.querySelectorAll('.lfp-token[title^=\"implicit reward\"]'))"
                               ".map(e => e.textContent).join('').includes('a dreadful ending')", timeout=60_000)
        settle(page)
        tokens = page.locator('.lfp-token[title^="implicit reward"]')
        assert tokens.count() >= 8
        assert re.fullmatch(r"implicit reward [+-]\d+\.\d{3}", tokens.first.get_attribute("title"))
        assert page.locator(".lfp-drivers a[href*='feature?']").count() > 0

        open_page(page, f"{url}/{PAGE_PATHS['lab']}", timeout_ms=60_000)
        page.get_by_role("button", name="Add feature").click()
        settle(page)
        page.get_by_role("button", name="Generate").click()
        page.wait_for_selector('h3:has-text("Unmodified against modified")', timeout=60_000)
        settle(page)
        assert page.get_by_text("Mean reward, modified").count() == 1
        assert page.locator('[data-testid="stDataFrame"]').count() == 1

        open_page(page, f"{url}/{PAGE_PATHS['quiz']}")
        name = page.locator('input[aria-label="Your name"]').last
        name.fill("Browser Annotator")
        name.press("Enter")
        page.wait_for_selector('text="Which explanation fits?"', timeout=30_000)
        settle(page)
        page.locator('[data-testid="stRadio"] label').filter(has_text="B").first.click()
        page.get_by_role("button", name="Save answer").click()
        page.wait_for_selector("text=Saved Browser Annotator's answer B", timeout=30_000)
        stored = RunStore(live_app_run).read("annotations", "annotator = ?", ["Browser Annotator"])
        assert stored["choice"].tolist() == [1]
        assert page.locator('[data-testid="stException"]').count() == 0 and errors == []


def test_the_story_opens_in_plain_words_with_a_chart_on_its_first_screen(app_runs):
    """Issue 20's checks in a real browser at 1400 x 1000, before any expander is opened: the Story at
    most 700 words, none of the statistician's words, Flesch reading ease at least 60 (tests/plain_words.py),
    a chart within the first screen; the same rules for the openings of the Lexicon and What tuning changed."""
    run = app_runs["micro"]
    with streamlit_app(["--run", str(run)]) as url, chromium(1400, 1000) as page:
        open_page(page, url)
        assert plain_problems(visible_text(page)) == []
        top = first_chart_top(page)
        assert top is not None and top < 1000
        assert page.locator('[data-testid="stExpander"] details[open]').count() == 0
        for name in ("lexicon", "diffing"):
            open_page(page, f"{url}/{PAGE_PATHS[name]}")
            assert plain_problems(opening_text(page)) == [], name


def test_the_playground_opens_in_plain_words(live_app_run):
    with streamlit_app(["--run", str(live_app_run)]) as url, chromium(1400, 1000) as page:
        open_page(page, f"{url}/{PAGE_PATHS['playground']}", timeout_ms=120_000)
        opening = opening_text(page)
        assert "Type a sentence" in opening and plain_problems(opening) == []


def test_the_tour_clicks_through_from_the_story_and_back(app_runs):
    run = app_runs["micro"]
    headings = ["What the model was tuned for", "What tuning did", "Did it learn the feedback?",
                "Where it parts from the reward", "Try a sentence yourself", "Switch a feature off"]
    with streamlit_app(["--run", str(run)]) as url, chromium(1400, 1000) as page:
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        open_page(page, url)
        page.get_by_role("button", name="Take the tour").click()
        for step, heading in enumerate(headings, start=1):
            page.wait_for_function(f"() => new URL(location.href).searchParams.get('tour') === '{step}'",
                                   timeout=30_000)
            settle(page)
            assert page.locator('[data-testid="stMain"] h2').first.inner_text().strip() == heading
            if step == 2:
                page.get_by_role("button", name="Back").click()
                page.wait_for_function("() => new URL(location.href).searchParams.get('tour') === '1'",
                                       timeout=30_000)
                settle(page)
                page.get_by_role("button", name="Next").click()
                page.wait_for_function("() => new URL(location.href).searchParams.get('tour') === '2'",
                                       timeout=30_000)
                settle(page)
            page.get_by_role("button", name="Finish" if step == len(headings) else "Next").click()
        page.wait_for_function("() => !new URL(location.href).searchParams.has('tour')", timeout=30_000)
        settle(page)
        assert page.get_by_role("button", name="Take the tour").count() == 1
        assert page.locator('[data-testid="stException"]').count() == 0 and errors == []
