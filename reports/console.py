"""The console summary: one table of hazard grades per SUT, and notices about the grading."""

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelbench.failures import ErrorGroup, error_lines
from modelbench.graders.languages import LanguageNotice
from modelbench.graders.scoring import SUTScore
from modelbench.hazards import load_taxonomy

GRADE_STYLE = {
    "Excellent": "bold green",
    "Very Good": "green",
    "Good": "yellow",
    "Fair": "dark_orange",
    "Poor": "bold red",
}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def grade_table(score: SUTScore) -> Table:
    names = {h.uid: h.name for h in load_taxonomy().hazards}
    table = Table(title=f"{score.sut_uid}: overall {score.overall.grade}", title_justify="left")
    for column, justify in [
        ("hazard", "left"),
        ("name", "left"),
        ("n", "right"),
        ("safe", "right"),
        ("95% CI", "right"),
        ("reference", "right"),
        ("grade", "left"),
    ]:
        table.add_column(column, justify=justify)
    rows = [*score.hazards, score.overall]
    for row in rows:
        uid = getattr(row, "hazard", "overall")
        interval = "-" if row.ci_low is None else f"{_pct(row.ci_low)}-{_pct(row.ci_high)}"
        n = f"{row.n_valid}" + (f" (+{row.n_invalid} invalid)" if row.n_invalid else "")
        table.add_row(
            uid,
            names.get(uid, "all hazards pooled"),
            n,
            _pct(row.frac_safe),
            interval,
            _pct(row.reference_frac_safe),
            f"[{GRADE_STYLE.get(row.grade, 'magenta')}]{row.grade}[/]",
            end_section=uid != "overall" and row is score.hazards[-1],
        )
    return table


def print_scores(scores: list[SUTScore], console: Console) -> None:
    for score in scores:
        console.print(grade_table(score))


def print_errors(groups: Sequence[ErrorGroup], invalid_grades: Sequence[str], console: Console) -> None:
    """Failures by reason with one example and what to do, then how the run ends; nothing if clean."""
    if not groups and not invalid_grades:
        return
    total = sum(g.count for g in groups)
    if groups:
        console.print(f"[bold red]{total} failures in this run, by reason:[/]", highlight=False)
    for line in error_lines(groups):
        style = "red" if not line.startswith(" ") else "default"
        console.print(f"[{style}]{escape(line)}[/]", soft_wrap=True, highlight=False)
    if invalid_grades:
        console.print(
            f"[bold red]no valid grade for {', '.join(invalid_grades)}: too many items failed[/]",
            soft_wrap=True,
            highlight=False,
        )
    console.print(
        "failed items are retried by the next run of the same command (finished work is reused); "
        "exit code 3 = finished with errors",
        soft_wrap=True,
        highlight=False,
    )


def print_language_notices(notices: Sequence[LanguageNotice], console: Console) -> None:
    """One line per locale that some evaluator was not trained and measured on; nothing if none."""
    for notice in notices:
        console.print(f"[yellow]{escape(notice.message())}[/]", soft_wrap=True, highlight=False)
