"""Self-contained HTML pages: one run's report, and a leaderboard of every SUT graded in a store.

People would rather look than read, and a grade is only trusted when its reader can see how it was
reached, so each page is one file (inline CSS and SVG) that opens offline, mails as an attachment
and prints.

Model output is untrusted input to these pages. Every value goes through Jinja2 autoescape, text
is cut to a fixed length (a 1 MB answer must not make the page unusable) and control characters
are made visible. A Content-Security-Policy with `default-src 'none'` means a page can never load
anything, and scripts run only when their hash matches ours: even a missed escape cannot execute.

The work is split by job, and this module is where the pages are drawn:

- `loading`: a finished run's record (`load_record`), never rebuilt or re-scored here;
- `formatting`: numbers, text and dates as shown; `charts`: grade bands, heat steps, the chart;
- `run_page` (with `evaluators`, `facts`): one run's page context;
- `cohorts` and `leaderboard`: who is ranked with whom, and the leaderboard page;
- `pages`: the Jinja2 environment, the Content-Security-Policy and writing a page.

The names below stay importable from here for code written before the split.
"""

from pathlib import Path
from typing import Any

from modelbench.reports.charts import BAND_STOPS, band_position, band_row, heat_step
from modelbench.reports.cohorts import (
    GRADING_FIELDS,
    cohorts,
    graders_label,
    grading_differences,
    grading_key,
    grading_of,
    grading_summary,
    set_apart_reason,
)
from modelbench.reports.facts import sut_facts
from modelbench.reports.formatting import MAX_NOTE_CHARS, MAX_TEXT_CHARS, clip, pct, pp
from modelbench.reports.leaderboard import (
    _paired,
    leaderboard_context,
    leaderboard_entries,
    render_leaderboard,
    write_leaderboard,
)
from modelbench.reports.loading import RECORD_NAME, RunData, load_record, load_run
from modelbench.reports.pages import environment, render, write_page
from modelbench.reports.record import RunRecord, run_error_rates
from modelbench.reports.run_page import MAX_LISTED_ITEMS, run_context


def render_run_report(store: Any, run_id: str) -> str:
    return render("run_report.html", run_context(load_run(store, run_id)))


def write_run_report(store: Any, run_id: str, out: Path) -> Path:
    return write_page(render_run_report(store, run_id), out)


__all__ = [
    "BAND_STOPS",
    "GRADING_FIELDS",
    "MAX_LISTED_ITEMS",
    "MAX_NOTE_CHARS",
    "MAX_TEXT_CHARS",
    "RECORD_NAME",
    "RunData",
    "RunRecord",
    "_paired",
    "band_position",
    "band_row",
    "clip",
    "cohorts",
    "environment",
    "graders_label",
    "grading_differences",
    "grading_key",
    "grading_of",
    "grading_summary",
    "heat_step",
    "leaderboard_context",
    "leaderboard_entries",
    "load_record",
    "load_run",
    "pct",
    "pp",
    "render_leaderboard",
    "render_run_report",
    "run_context",
    "run_error_rates",
    "set_apart_reason",
    "sut_facts",
    "write_leaderboard",
    "write_run_report",
]
