"""A run's report: one schema for its rows, their readers and writers, its plots.

* :mod:`phasetune.report.rows`: the columns of ``report.csv`` / ``report.json`` (units in
  the names), the ``met`` rule, the terminal and Markdown tables, reading and writing.
* :mod:`phasetune.report.plots`: ``phase_diagram.png`` and ``ess_history.png``.
"""

from phasetune.report.rows import (
    COLUMNS,
    FLOAT_COLUMNS,
    format_table,
    load_report,
    met_verdict,
    report_markdown,
    write_report,
)

__all__ = [
    "COLUMNS",
    "FLOAT_COLUMNS",
    "format_table",
    "load_report",
    "met_verdict",
    "report_markdown",
    "write_report",
]
