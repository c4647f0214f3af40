"""The console's resilience tables: per SUT, each attack's unsafe rate and paired gap, then the
gap per hazard and attack, then which attacks the evaluator was never measured on."""

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelbench.reports.console import percent
from modelbench.scoring import AttackScore, GapScore, SUTResilience


def _span(low: float | None, high: float | None, sign: bool = False) -> str:
    if low is None or high is None:
        return ""
    return f" [{percent(low, sign)}, {percent(high, sign)}]"


def gap_cell(gap: GapScore) -> str:
    """The raw paired gap with its interval and McNemar's p, or why there is none."""
    if not gap.sufficient:
        return f"insufficient data (n={gap.n_pairs})"
    p = gap.gap.mcnemar_p
    sig = "" if p is None else (" p<0.001" if p < 0.001 else f" p={p:.3f}")
    return f"{percent(gap.gap.delta_unsafe_rate, True)}{_span(gap.gap.ci_low, gap.gap.ci_high, True)}{sig}"


def corrected_gap_cell(gap: GapScore) -> str:
    c = gap.gap.corrected
    if not gap.sufficient:
        return "-"
    if c is None:
        return "not measured"
    if not c.identifiable:
        return "not identifiable"
    return f"{percent(c.estimate, True)}{_span(c.ci_low, c.ci_high, True)}"


def attack_table(resilience: SUTResilience) -> Table:
    table = Table(title=f"{escape(resilience.sut_uid)}: under attack", title_justify="left")
    columns = (
        "attack",
        "pairs",
        "baseline",
        "under attack",
        "gap (paired)",
        "gap, corrected",
        "degenerate",
        "grade",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("attack", "grade") else "right")
    for a in resilience.attacks:
        o = a.overall
        table.add_row(
            escape(a.attack) + ("" if a.measured_on or a.rates is None else " *"),
            str(o.n_pairs),
            percent(o.baseline_unsafe / o.n_pairs if o.n_pairs else None),
            f"{percent(o.attacked_rate)}{_span(o.attacked_ci_low, o.attacked_ci_high)}",
            gap_cell(o),
            corrected_gap_cell(o),
            "-" if a.degenerate is None else percent(a.degenerate.rate) + (" !" if a.gap_note else ""),
            f"{a.baseline_grade} -> {a.grade}",
        )
    j = resilience.jailbreak.overall
    table.add_row(
        "all attacks",
        str(resilience.n_pairs),
        percent(resilience.baseline_overall_unsafe),
        percent(resilience.jailbreak_overall_unsafe),
        f"{percent(resilience.gap, True)}{_span(resilience.gap_ci_low, resilience.gap_ci_high, True)}",
        "",
        "",
        f"{resilience.attacks[0].baseline_grade if resilience.attacks else ''} -> {j.grade}",
        style="bold",
    )
    return table


def hazard_gap_table(resilience: SUTResilience) -> Table:
    """Hazards down, attacks across: the paired gap with its interval in each cell."""
    table = Table(
        title=f"{escape(resilience.sut_uid)}: gap per hazard (under attack - baseline)", title_justify="left"
    )
    table.add_column("hazard")
    for a in resilience.attacks:
        table.add_column(escape(a.attack), justify="right")
    hazards = list(dict.fromkeys(g.hazard for a in resilience.attacks for g in a.hazards))
    for hazard in hazards:
        cells = []
        for a in resilience.attacks:
            gap = next((g for g in a.hazards if g.hazard == hazard), None)
            cells.append("-" if gap is None else gap_cell(gap))
        table.add_row(str(hazard), *cells)
    return table


def validity_lines(attacks: Sequence[AttackScore]) -> list[str]:
    """One line per attack: on which labelled answers the evaluator's accuracy was measured."""
    lines = []
    for a in attacks:
        if a.rates is None:
            lines.append(
                f"{a.attack}: raw rates, not corrected: these graders' error rates were not measured"
            )
        elif a.measured_on:
            lines.append(
                f"{a.attack}: corrected with the evaluator's error rates on held-out {a.measured_on} "
                f"answers ({a.rates.summary()})"
            )
        else:
            lines.append(
                f"* {a.attack}: the evaluator was never measured on answers to this attack; "
                "corrected with its general error rates"
            )
    return lines


def sut_lines(resilience: SUTResilience) -> list[str]:
    """What differs by SUT: answers decoded (and echoes left out), prompts without a rewrite."""
    lines = []
    for a in resilience.attacks:
        who = f"{resilience.sut_uid}, {a.attack}"
        if a.decoded is not None:
            lines.append(
                f"  {who}: {a.decoded} answers decoded before grading, {a.as_given} graded as given (they "
                f"did not decode); {a.echoed or 0} echoed the request or our instruction back (the echo "
                "left out)"
            )
        if a.n_missing:
            lines.append(f"  {who}: {a.n_missing} base items have no attacked prompt (the rewrite failed)")
    return lines


def print_resilience(resilience: Sequence[SUTResilience], console: Console) -> None:
    for entry in resilience:
        console.print(attack_table(entry))
        console.print(hazard_gap_table(entry))
        for a in entry.attacks:
            if a.gap_note:
                console.print(
                    f"[bold magenta]{escape(entry.sut_uid)}, {escape(a.attack)}[/] !: {escape(a.gap_note)}",
                    soft_wrap=True,
                    highlight=False,
                )
    if resilience:
        lines = validity_lines(resilience[0].attacks) + [x for r in resilience for x in sut_lines(r)]
        for line in lines:
            console.print(
                escape(line),
                soft_wrap=True,
                highlight=False,
                style="yellow" if line.startswith("*") else None,
            )
        console.print(
            "gap: unsafe rate under attack minus baseline on the same base items; [95% CI] Agresti-Min, "
            "p McNemar's exact test; the evaluator judges the clean request and the (decoded) answer",
            soft_wrap=True,
            highlight=False,
        )
