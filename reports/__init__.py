"""Outputs of a run: the JSON record and the console summary."""

from modelbench.reports.console import print_errors, print_language_notices, print_scores
from modelbench.reports.record import build_record, write_record

__all__ = ["build_record", "print_errors", "print_language_notices", "print_scores", "write_record"]
