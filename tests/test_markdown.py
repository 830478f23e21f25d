"""Markdown tables and number formats of the report."""

from __future__ import annotations

import math

from hpo.report.markdown import DASH, duration, interval, number, signed, table


def test_table_aligns_numeric_columns_right_and_escapes_pipes() -> None:
    text = table(["name", "value"], [["a|b", 0.5]], numeric=[1])
    assert text.splitlines() == ["| name | value |", "| --- | ---: |", "| a\\|b | 0.5000 |"]


def test_missing_numbers_show_a_dash() -> None:
    assert number(math.nan) == signed(None) == interval(None) == DASH
    assert signed(0.01) == "+0.0100" and interval((-0.01, 0.02)) == "[-0.0100, +0.0200]"


def test_durations_pick_a_readable_unit() -> None:
    assert duration(45) == "45 s"
    assert duration(600) == "10.0 min"
    assert duration(3 * 3600) == "3.0 h"
