"""Text from the store shown as HTML, always escaped first.

Explanations come from an LLM and examples from a corpus: either may hold `<script>`, markup or
markdown. Every piece of such text is HTML-escaped before it is wrapped, so it shows as the
characters it is; the only markup on the page is the spans built here. Rendered with `st.html`,
which neither runs scripts nor reads the text as markdown.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from urllib.parse import urlencode

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


def note(text: str) -> str:
    """A small grey line of stored text (an LLM judge's answer may hold markdown or markup)."""
    return f'<div style="font-size: 0.85rem; color: #555">{html.escape(text)}</div>'


def labelled(label: str, body: str) -> str:
    """A small caption line above a block of HTML (one example among several)."""
    return f'<div style="margin: 0.7rem 0 0.15rem; font-size: 0.85rem; color: #555">{html.escape(label)}</div>{body}'


POSITIVE, NEGATIVE = "0, 121, 140", "209, 73, 91"
"""RGB of reward above and below zero (the charts' base and tuned colours)."""


def _reward_span(piece: str, value: float, scale: float, title: str) -> str:
    strength = min(abs(float(value)) / scale, 1.0) if scale > 0 else 0.0
    rgb = POSITIVE if value >= 0 else NEGATIVE
    return (f'<span class="lfp-token" title="{html.escape(title)}" style="background: rgba({rgb}, {strength:.2f}); '
            f'border-radius: 2px; padding: 1px 0">{html.escape(piece)}</span>')


def text_pieces(text: str, ends: Sequence[int]) -> list[str]:
    """What of `text` each token shows: from the end of the previous token to its own end, so the
    spaces between words stay visible. Tokens that share a character (parts of one emoji) show
    '·' after the first."""
    pieces, shown = [], 0
    for end in (int(e) for e in ends):
        piece = text[shown:end] if end > shown else "·"
        pieces.append(piece)
        shown = max(shown, end)
    return pieces


def reward_heat(text: str, ends: Sequence[int], values: Sequence[float], scale: float, label: str) -> str:
    """A text as coloured tokens: teal where the value is above zero, red below, as strong as
    |value| / scale; each token's value in its tooltip."""
    spans = [_reward_span(piece, value, scale, f"{label} {float(value):+.3f}")
             for piece, value in zip(text_pieces(text, ends), values)]
    return ('<div style="font-family: ui-monospace, monospace; font-size: 0.95rem; white-space: pre-wrap; '
            f'line-height: 1.9">{"".join(spans)}</div>')


def feature_link(query: dict[str, str], label: str) -> str:
    """A link to the feature page, the feature named in the URL (the page reads its query)."""
    return f'<a href="feature?{html.escape(urlencode(query))}" target="_self">{html.escape(label)}</a>'


def drivers_table(pieces: Sequence[str], values: Sequence[float], drivers: Sequence[Sequence[tuple]],
                  run: str, relevant: set[tuple[int, int, int]]) -> str:
    """Per token: its implicit reward and the features that pushed it most (weight x code), each a
    link to its feature page; features judged relevant to the tuning task in bold."""
    rows = []
    for position, (piece, value, parts) in enumerate(zip(pieces, values, drivers)):
        links = []
        for layer, size, feature, contribution in parts:
            query = {"model": "tuned", "layer": str(layer), "dict_size": str(size), "feature": str(feature), "run": run}
            link = feature_link(query, f"L{layer}/{size} #{feature} ({contribution:+.2f})")
            links.append(f"<strong>{link}</strong>" if (layer, size, feature) in relevant else link)
        rows.append(f'<tr><td style="color: #888">{position}</td><td><code>{html.escape(piece)}</code></td>'
                    f'<td style="text-align: right">{float(value):+.3f}</td><td>{" · ".join(links)}</td></tr>')
    return ('<table class="lfp-drivers" style="font-size: 0.85rem; border-collapse: collapse">'
            '<tr><th>#</th><th>token</th><th>implicit reward</th><th>features that drove it (weight × code)</th></tr>'
            f'{"".join(rows)}</table>')


def bullets(items: Sequence[str]) -> str:
    """Sentences as a bulleted list, each shown exactly as written."""
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def marked_word(text: str, start: int, end: int, positive: bool) -> str:
    """A sentence with one word highlighted (teal where the reward pays for it, red where it takes
    points), as a quotation."""
    rgb = POSITIVE if positive else NEGATIVE
    word = (f'<mark class="lfp-word" style="background: rgba({rgb}, 0.25); border-bottom: 2px solid rgb({rgb}); '
            f'padding: 0 2px; border-radius: 2px">{html.escape(text[start:end])}</mark>')
    return ('<blockquote style="border-left: 3px solid #edae49; margin: 0.2rem 0; padding: 0.2rem 0.8rem; '
            f'font-size: 1.05rem">{html.escape(text[:start])}{word}{html.escape(text[end:])}</blockquote>')


def completions(prompt: str, pairs: Sequence[tuple[str, str]]) -> str:
    """An opening and what each model wrote after it ((label, completion) pairs), each exactly as written."""
    rows = "".join(f'<div><span style="color: #555">{html.escape(label)}</span> '
                   f'<span style="color: #888">{html.escape(prompt)}</span>{html.escape(text)}</div>'
                   for label, text in pairs)
    return f'<div class="lfp-completions" style="font-size: 0.9rem; line-height: 1.5">{rows}</div>'
