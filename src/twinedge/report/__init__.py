"""Metrics aggregation, tables, plots and the HTML report of a run."""

from twinedge.report.outputs import summary_table, write_outputs

__all__ = ["summary_table", "write_outputs"]
