"""How numbers read, on screen and in `lfp report`. One place, so that the dashboard's pages and
the command line agree, and tests can compare what a page shows with the store by formatting the
store's value the same way."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import pandas as pd


def missing(value: Any) -> bool:
    """None, NaN and pandas' NA: what the store holds for a value a stage did not fill."""
    return value is None or bool(pd.isna(value))


def num(value: Any, digits: int = 3) -> str:
    """A measurement with `digits` significant digits; counts stay whole; '–' when absent."""
    if missing(value):
        return "–"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{int(value):,}"
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 10 ** digits else f"{value:.{digits}g}"


def signed(value: Any, digits: int = 3) -> str:
    """A difference, always with its sign."""
    text = num(value, digits)
    return text if missing(value) or text.startswith("-") else f"+{text}"


def percent(value: Any, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    return "–" if missing(value) else f"{100 * float(value):.{digits}f}%"


def p_number(value: Any) -> str:
    """A p-value as people quote it: '< 0.001' below a thousandth, else two significant digits."""
    if missing(value):
        return "n/a"
    return "< 0.001" if float(value) < 0.001 else f"{float(value):.2g}"


def p_value(value: Any) -> str:
    """'p < 0.001', 'p = 0.042'."""
    number = p_number(value)
    return f"p {number}" if number.startswith("<") else f"p = {number}"


def span(low: Any, high: Any, show: Callable[[Any], str] = num) -> str:
    """Two ends of an interval, each written by `show`."""
    return "n/a" if missing(low) or missing(high) else f"{show(low)} to {show(high)}"


def interval(low: Any, high: Any, show: Callable[[Any], str] = num) -> str:
    """A 95% confidence interval."""
    return "CI n/a" if missing(low) or missing(high) else f"95% CI {span(low, high, show)}"


def rounded(value: Any, digits: int = 2) -> str:
    """A number for people (the Story page): `digits` significant digits, never in exponent form
    ('0.045', '0.69', '3.1', '120', '12,000'); counts stay whole; '–' when absent."""
    if missing(value):
        return "–"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{int(value):,}"
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    places = digits - 1 - math.floor(math.log10(abs(value)))
    short = round(value, places)
    if short != 0 and math.floor(math.log10(abs(short))) > math.floor(math.log10(abs(value))):
        places -= 1  # rounding carried into a new digit (0.0996 -> 0.10): one place fewer
        short = round(value, places)
    return f"{short:,.{max(places, 0)}f}"


def rounded_signed(value: Any, digits: int = 2) -> str:
    """`rounded`, always with its sign ('+3.1', '-0.45')."""
    text = rounded(value, digits)
    return text if missing(value) or text.startswith("-") or text == "0" else f"+{text}"


def share(value: Any) -> str:
    """A fraction in [0, 1] as a whole percentage for people: '45%'; 'under 1%' and 'over 99%' where
    rounding would say 0% or 100% of something that is not none or all."""
    if missing(value):
        return "–"
    value = float(value)
    if 0 < value < 0.005:
        return "under 1%"
    if 0.995 < value < 1:
        return "over 99%"
    return f"{100 * value:.0f}%"
