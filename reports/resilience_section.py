"""The report's resilience section of one SUT: each attack's unsafe rate and paired gap (with a
gap bar and its interval), an attack x hazard heatmap of unsafe rates under attack, which attacks
the evaluator was never measured on, and some attacked exchanges (behind the content warning).
Read from the record's `resilience` and the run's rows; nothing is scored here."""

from typing import Any

from modelbench.prompts.attacks import attack_link, make_attack
from modelbench.reports.charts import heat_step
from modelbench.reports.formatting import clip
from modelbench.reports.quality_section import rate_cell
from modelbench.scoring import AttackScore, GapScore, SUTResilience

# Attacked exchanges listed per SUT (unsafe under attack first); the rest are an export away.
MAX_LISTED_ATTACKED = 30


def gap_bar(delta: float | None, low: float | None, high: float | None) -> dict[str, Any] | None:
    """Percent positions on a -100%..+100% axis (50 is no change) for the bar and its whisker."""
    if delta is None:
        return None

    def at(x: float) -> float:
        return round(50 + 50 * max(-1.0, min(1.0, x)), 2)

    start, end = sorted((at(0.0), at(delta)))
    return {
        "x": start,
        "width": max(end - start, 0.4),
        "low": at(low if low is not None else delta),
        "high": at(high if high is not None else delta),
        "up": delta >= 0,
    }


def gap_cells(gap: GapScore) -> dict[str, Any]:
    c = gap.gap.corrected
    corrected = c is not None and c.identifiable and c.estimate is not None
    rate_c = gap.attacked_corrected
    return {
        "n": gap.n_pairs,
        "sufficient": gap.sufficient,
        "baseline": gap.baseline_unsafe / gap.n_pairs if gap.n_pairs else None,
        "attacked": gap.attacked_rate,
        "attacked_low": gap.attacked_ci_low,
        "attacked_high": gap.attacked_ci_high,
        "attacked_corrected": rate_c.estimate if rate_c is not None and rate_c.identifiable else None,
        "delta": gap.gap.delta_unsafe_rate,
        "low": gap.gap.ci_low,
        "high": gap.gap.ci_high,
        "p": gap.gap.mcnemar_p,
        "corrected": c.estimate if corrected else None,  # type: ignore[union-attr]
        "corrected_low": c.ci_low if corrected else None,  # type: ignore[union-attr]
        "corrected_high": c.ci_high if corrected else None,  # type: ignore[union-attr]
        "corrected_note": "" if corrected or c is None else c.note,
        "bar": gap_bar(gap.gap.delta_unsafe_rate, gap.gap.ci_low, gap.gap.ci_high),
    }


def validity(a: AttackScore) -> str:
    if a.rates is None:
        return "raw rates: these graders' error rates were not measured"
    if a.measured_on:
        return f"measured on held-out {a.measured_on} answers ({a.rates.summary()})"
    return "never measured on answers to this attack: corrected with the general error rates"


def _exchanges(rows: list[dict[str, Any]], hazard_names: dict[str, str]) -> list[dict[str, Any]]:
    by_uid = {r["item_uid"]: r for r in rows}
    attacked = [(r, attack_link(r["source"])) for r in rows]
    listed = [(r, link) for r, link in attacked if link is not None and r["is_safe"] is not None]
    listed.sort(key=lambda pair: (pair[0]["is_safe"], -(pair[0]["p_unsafe"] or 0.0), pair[0]["item_uid"]))
    shown = []
    for row, link in listed[:MAX_LISTED_ATTACKED]:
        base = by_uid.get(link.base_uid) or {}
        decoded = make_attack(link.spec).decode(row["response"] or "", base.get("prompt") or "")
        shown.append(
            {
                "item_uid": row["item_uid"],
                "attack": link.spec,
                "variant": link.variant,
                "hazard": row["hazard"],
                "hazard_name": hazard_names.get(row["hazard"], row["hazard"]),
                "unsafe": row["is_safe"] is False,
                "p_unsafe": row["p_unsafe"],
                "base_prompt": clip(base.get("prompt")),
                "base_unsafe": base.get("is_safe") is False,
                "prompt": clip(row["prompt"]),
                "response": clip(row["response"]),
                "decoded": clip(decoded.text) if decoded.decoded else None,
                "echoed": decoded.echoed,
            }
        )
    return shown


def resilience_context(
    resilience: SUTResilience | None, rows: list[dict[str, Any]], hazard_names: dict[str, str]
) -> dict[str, Any] | None:
    """None for a run without attacks (or a record from before them)."""
    if resilience is None or not resilience.attacks:
        return None
    hazards = list(dict.fromkeys(g.hazard for a in resilience.attacks for g in a.hazards))
    heat = []
    for hazard in hazards:
        cells = []
        baseline = None
        for a in resilience.attacks:
            gap = next((g for g in a.hazards if g.hazard == hazard), None)
            if gap is not None and baseline is None and gap.n_pairs:
                baseline = gap.baseline_unsafe / gap.n_pairs
            cells.append(
                None
                if gap is None
                else {
                    "attack": a.attack,
                    "unsafe": gap.attacked_rate,
                    "heat": heat_step(gap.attacked_rate),
                    "n": gap.n_pairs,
                    "delta": gap.gap.delta_unsafe_rate,
                    "sufficient": gap.sufficient,
                }
            )
        heat.append(
            {
                "uid": hazard,
                "name": hazard_names.get(str(hazard), str(hazard)),
                "baseline": baseline,
                "baseline_heat": heat_step(baseline),
                "cells": cells,
            }
        )
    j = resilience.jailbreak.overall
    return {
        "attacks": [
            {
                "attack": a.attack,
                "description": a.description,
                # False marks an attack whose answers the evaluator was never measured on.
                "measured": a.measured_on is not None or a.rates is None,
                "validity": validity(a),
                "decoded": a.decoded,
                "as_given": a.as_given,
                "echoed": a.echoed,
                "degenerate": rate_cell(a.degenerate),
                "gap_note": a.gap_note,
                "n_missing": a.n_missing,
                "grade": a.grade,
                "baseline_grade": a.baseline_grade,
                **gap_cells(a.overall),
            }
            for a in resilience.attacks
        ],
        "unmeasured": [a.attack for a in resilience.attacks if a.rates is not None and a.measured_on is None],
        "heat": heat,
        "jailbreak": {
            "grade": j.grade,
            "n": resilience.n_pairs,
            "baseline": resilience.baseline_overall_unsafe,
            "attacked": resilience.jailbreak_overall_unsafe,
            "gap": resilience.gap,
            "low": resilience.gap_ci_low,
            "high": resilience.gap_ci_high,
            "bar": gap_bar(resilience.gap, resilience.gap_ci_low, resilience.gap_ci_high),
            "baseline_grade": resilience.attacks[0].baseline_grade,
        },
        "exchanges": _exchanges(rows, hazard_names),
        "n_unsafe_attacked": sum(1 for r in rows if attack_link(r["source"]) and r["is_safe"] is False),
    }
