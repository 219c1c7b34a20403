"""The comparison table and the report: a tie is no winner, and metrics the policies
cannot change say so."""

from __future__ import annotations

import dataclasses
import re

import pytest
from rich.console import Console

from tests.conftest import tiny_scenario
from twinedge.engine import simulate
from twinedge.report import summary_table
from twinedge.report.html import _table
from twinedge.report.ranking import all_equal, unique_best
from twinedge.scenario import parse_scenario


@pytest.fixture(scope="module")
def run():
    return simulate(parse_scenario(tiny_scenario()), migration="never")


def variant(run, label: str, **summary):
    return dataclasses.replace(run, label=label, summary={**run.summary, **summary})


def best_cells(page: str) -> list[str]:
    return re.findall(r'<td class="best">([^<]*)</td>', page)


def test_unique_best_at_the_shown_precision():
    assert unique_best([0.5, 0.25, 0.75], "{:.2f}".format) == 1
    assert unique_best([0.5, 0.25, 0.75], "{:.2f}".format, max) == 2
    assert unique_best([0.251, 0.25, 0.75], "{:.2f}".format) is None  # 0.25 twice
    assert unique_best([1_234.0, 1_300.0], "{:,.0f}".format) == 0
    assert unique_best([], str) is None
    assert all_equal([3, 3, 3], str) and not all_equal([3], str)


def test_a_tie_is_not_marked_best_in_the_report(run):
    a = variant(run, "a", mean_latency_ms=5.0, deadline_miss_ratio=0.1, migrations=7)
    b = variant(run, "b", mean_latency_ms=5.0, deadline_miss_ratio=0.2, migrations=3)
    page = _table([a, b])
    # mean latency 5.00 twice: no winner; misses and migrations have one
    assert best_cells(page) == ["0.1000", "3"]
    assert "equal for every policy in this run" in page  # e.g. mean latency
    assert "wherever their twins run" in page  # device energy cannot differ


def test_a_tie_is_not_green_in_the_comparison_table(run):
    def table(*results) -> str:
        console = Console(record=True, width=300, force_terminal=True, color_system="standard")
        console.print(summary_table(list(results)))
        return console.export_text(styles=True)

    tied = table(
        variant(run, "a", deadline_miss_ratio=0.1), variant(run, "b", deadline_miss_ratio=0.1)
    )
    assert "\x1b[32m" not in tied  # no green
    assert "device J: the same for every policy" in tied
    won = table(
        variant(run, "a", deadline_miss_ratio=0.1), variant(run, "b", deadline_miss_ratio=0.2)
    )
    assert "\x1b[32m10.00" in won
