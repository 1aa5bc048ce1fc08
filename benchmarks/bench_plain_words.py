"""Do the pages a non-specialist reads first pass the plain-words rules on a real run? (issue 20)

Serves the dashboard on RUN, opens it in headless Chromium at 1400 x 1000 (the browser tests'
`tests/browser.py`) and, for the Story page (its visible text before any expander is opened) and
the openings of the Lexicon, Implicit reward and What tuning changed pages (the text above their
first expander or section), prints the seconds each took to render, its words, its Flesch reading
ease, the statistician's words it uses (`tests/plain_words.py`: at most 700 words, ease at least 60,
none of them), and where the first chart starts:

    PYTHONPATH=. python -m benchmarks.bench_plain_words --run runs/tiny
"""

from __future__ import annotations

import argparse

from tests.browser import chromium, first_chart_top, open_page, opening_text, streamlit_app, visible_text
from tests.plain_words import jargon, reading_ease, words

PAGES = {"story": "", "lexicon": "lexicon", "implicit reward": "playground", "what tuning changed": "diffing"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    args = parser.parse_args()
    print("| page | seconds to render | words | reading ease | statistician's words | first chart at (px) |\n"
          "|---|---|---|---|---|---|")
    with streamlit_app(["--run", args.run]) as url, chromium(1400, 1000) as page:
        for name, path in PAGES.items():
            seconds = open_page(page, f"{url}/{path}", timeout_ms=180_000)
            text = visible_text(page) if name == "story" else opening_text(page)
            top = first_chart_top(page)
            print(f"| {name} | {seconds:.1f} | {len(words(text))} | {reading_ease(text):.1f} | "
                  f"{', '.join(jargon(text)) or 'none'} | {'-' if top is None else f'{top:.0f}'} |")


if __name__ == "__main__":
    main()
