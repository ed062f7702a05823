"""Markdown pieces of the benchmark report: numbers to text, and tables."""

from __future__ import annotations

import math
from collections.abc import Iterable


def fmt_num(x: float | None, digits: int = 3) -> str:
    """A number to ``digits`` significant digits with thousands separators; '-' when missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{x:,.{decimals}f}"


def fmt_ratio(x: float | None) -> str:
    """``1.23x``; '-' when missing."""
    return "-" if x is None else f"{fmt_num(x)}x"


def fmt_mean_std(cell: tuple[float, float, int] | None) -> str:
    """``(mean, std, n)`` over seeds as ``0.123 ± 0.004`` (the mean alone for one seed); '-' if None."""
    if cell is None:
        return "-"
    mean, std, n = cell
    return f"{mean:.3f}" if n <= 1 else f"{mean:.3f} ± {std:.3f}"


def code(name: str) -> str:
    """A column or key name as inline code."""
    return f"`{name}`"


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A markdown table; the first column left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
