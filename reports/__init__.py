"""Outputs of a run: the JSON record, the console summary, and the HTML pages.

The record and the console are imported with the package (the runner needs them); the HTML pages
(Jinja2 templates) and reading a finished run load on first use of their names.
"""

from modelbench.lazy import lazy_exports
from modelbench.reports.console import print_errors, print_language_notices, print_quality, print_scores
from modelbench.reports.record import (
    RECORD_VERSION,
    ExecutorSection,
    LocalExecution,
    RayExecution,
    RunConfig,
    RunCounts,
    RunGrades,
    RunRecord,
    RunTiming,
    RunWork,
    SUTSummary,
    UnitTiming,
    as_run_config,
    build_record,
    write_record,
)
from modelbench.reports.resilience_console import print_resilience

_LAZY = {
    "export_rows": "modelbench.reports.export",
    "grading_of": "modelbench.reports.cohorts",
    "grading_summary": "modelbench.reports.cohorts",
    "record_path": "modelbench.reports.loading",
    "score_rows": "modelbench.reports.export",
    "resilience_rows": "modelbench.reports.export",
    "item_rows": "modelbench.reports.export",
    "load_record": "modelbench.reports.loading",
    "load_run": "modelbench.reports.loading",
    "render_run_report": "modelbench.reports.run_page",
    "write_run_report": "modelbench.reports.run_page",
    "render_leaderboard": "modelbench.reports.leaderboard",
    "write_leaderboard": "modelbench.reports.leaderboard",
    "paired_comparison": "modelbench.reports.leaderboard",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "RECORD_VERSION",
    "ExecutorSection",
    "LocalExecution",
    "RayExecution",
    "RunConfig",
    "RunCounts",
    "RunGrades",
    "RunRecord",
    "RunTiming",
    "RunWork",
    "SUTSummary",
    "UnitTiming",
    "as_run_config",
    "build_record",
    "export_rows",
    "grading_of",
    "grading_summary",
    "load_record",
    "load_run",
    "paired_comparison",
    "print_errors",
    "print_quality",
    "print_resilience",
    "print_language_notices",
    "print_scores",
    "record_path",
    "resilience_rows",
    "render_leaderboard",
    "render_run_report",
    "score_rows",
    "item_rows",
    "write_leaderboard",
    "write_record",
    "write_run_report",
]
