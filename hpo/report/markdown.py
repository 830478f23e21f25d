"""Markdown building blocks for the report: tables and number formats that never vary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DASH = "—"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()
) -> str:
    """A pipe table; columns whose index is in `numeric` are right-aligned."""
    align = ["---:" if i in numeric else "---" for i in range(len(headers))]
    lines = [_row(headers), _row(align)]
    lines += [_row([_cell(v) for v in row]) for row in rows]
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return number(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def number(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:+.{digits}f}"


def interval(bounds: tuple[float, float] | None, digits: int = 4) -> str:
    if bounds is None:
        return DASH
    return f"[{bounds[0]:+.{digits}f}, {bounds[1]:+.{digits}f}]"


def pct(value: float | None) -> str:
    """An accuracy as a percentage with one decimal: 0.2134 -> 21.3."""
    return DASH if value is None or value != value else f"{100 * value:.1f}"


def pp(value: float | None, sign: bool = True) -> str:
    """A difference of accuracies in points with one decimal: 0.0123 -> +1.2."""
    if value is None or value != value:
        return DASH
    return f"{100 * value:+.1f}" if sign else f"{100 * value:.1f}"


@dataclass(frozen=True)
class Units:
    """How a study's metric reads: an accuracy in % with differences in points (pp), or a
    loss as it is, with differences in the loss's own units."""

    accuracy: bool
    score_unit: str
    diff_unit: str
    moving: float
    """A change of the best score that still makes a longer search worth it."""

    def score(self, value: float | None) -> str:
        return pct(value) if self.accuracy else number(value)

    def diff(self, value: float | None) -> str:
        return pp(value) if self.accuracy else signed(value)

    def change(self, value: float) -> str:
        return f"{100 * value:.1f} points" if self.accuracy else number(value)

    def interval(self, bounds: tuple[float, float] | None) -> str:
        if bounds is None or not self.accuracy:
            return interval(bounds)
        return f"[{pp(bounds[0])}, {pp(bounds[1])}]"


def units(metric: str) -> Units:
    """The units of `metric`, a study's objective (`val_accuracy` or `val_loss`)."""
    if metric.endswith("accuracy"):
        return Units(True, " (%)", " (pp)", 0.005)
    return Units(False, "", "", 0.01)


def duration(seconds: float) -> str:
    """`seconds` in the unit a reader wants: s, min or h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def value_text(value: Any) -> str:
    """A param value, short: floats to 3 significant digits."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={value_text(v)}" for k, v in params.items())


def share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else DASH
