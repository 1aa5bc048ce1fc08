"""How numbers read, on screen and in `lfp report`. One place, so that the dashboard's pages and
the command line agree, and tests can compare what a page shows with the store by formatting the
store's value the same way."""

from __future__ import annotations

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
