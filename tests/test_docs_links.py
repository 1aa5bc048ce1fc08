"""The documentation's links hold: every markdown link (and image) in README.md and docs/*.md that
points into the repository names a file that exists, and an anchor on a markdown file names one of
its headings. The README sends readers into docs/ for everything it leaves out, so a broken link
loses them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", flags=re.M | re.S)


def links(text: str) -> list[str]:
    """Link targets outside fenced code blocks."""
    return LINK.findall(FENCE.sub("", text))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower-cased, punctuation but hyphens and underscores dropped,
    spaces made hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_anchor_follows_github():
    assert anchor("Fine-tuning: the paper's PPO settings on TRL's RLOO") == "fine-tuning-the-papers-ppo-settings-on-trls-rloo"
    assert anchor("Presets, worlds and tasks") == "presets-worlds-and-tasks"
    assert links("[a](b.md) ![c](d.png)\n```\n[e](f.md)\n```\n[g](https://x.org)") == ["b.md", "d.png", "https://x.org"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_resolve(document):
    broken = []
    for target in links(document.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: leave the repository
            continue
        path_part, _, fragment = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == []


def test_readme_stays_short_and_names_the_test_command():
    """Issue 20: the README gets out of the way (at most 12 KB) and keeps the command CI runs."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 12 * 1024
    assert "bash scripts/test.sh" in text and "bash scripts/demo.sh" in text
    assert "docs/screenshots/story.png" in text
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
