"""Text from the store shown as HTML, always escaped first.

Explanations come from an LLM and examples from a corpus: either may hold `<script>`, markup or
markdown. Every piece of such text is HTML-escaped before it is wrapped, so it shows as the
characters it is; the only markup on the page is the spans built here. Rendered with `st.html`,
which neither runs scripts nor reads the text as markdown.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

SHADE = "237, 174, 73"
"""RGB of the highlight; its opacity is the activation relative to the feature's maximum."""


def highlighted(tokens: Sequence[str], activations: Sequence[float], scale: float, marked: int | None = None) -> str:
    """One example as HTML: tokens shaded by activation / scale, the token at `marked` outlined."""
    spans = []
    for i, (token, value) in enumerate(zip(tokens, activations)):
        strength = min(max(float(value) / scale, 0.0), 1.0) if scale > 0 else 0.0
        outline = "outline: 1px solid #d1495b;" if i == marked else ""
        spans.append(f'<span title="{float(value):.3f}" style="background: rgba({SHADE}, {strength:.2f});'
                     f'{outline} border-radius: 2px">{html.escape(str(token))}</span>')
    return ('<div style="font-family: ui-monospace, monospace; font-size: 0.9rem; white-space: pre-wrap; '
            f'line-height: 1.7">{"".join(spans)}</div>')


def quoted(text: str) -> str:
    """A feature's explanation as a block quote, exactly as written."""
    return ('<blockquote style="border-left: 3px solid #edae49; margin: 0; padding: 0.2rem 0.8rem; '
            f'font-size: 1.15rem">{html.escape(text)}</blockquote>')


def labelled(label: str, body: str) -> str:
    """A small caption line above a block of HTML (one example among several)."""
    return f'<div style="margin: 0.7rem 0 0.15rem; font-size: 0.85rem; color: #555">{html.escape(label)}</div>{body}'
