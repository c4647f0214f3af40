"""The leaderboard page: every SUT graded in a store, from its latest finished run, ranked within
its cohort (`modelbench.reports.cohorts`), compressed models under their dense base with the paired
change (`modelbench.scoring.paired`), a sparsity chart and a hazard heatmap."""

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from modelbench.errors import UserError
from modelbench.hazards import load_taxonomy
from modelbench.reports.charts import HEAT_STEPS, corrected_marks, heat_step, sparsity_chart
from modelbench.reports.cohorts import (
    cohorts,
    entry_order,
    grading_key,
    grading_of,
    grading_summary,
)
from modelbench.reports.facts import sut_facts
from modelbench.reports.formatting import grade_legend, grade_rank, num, unsafe
from modelbench.reports.loading import load_record
from modelbench.reports.pages import csp, render, sort_script, write_page
from modelbench.reports.quality_board import quality_fields, usefulness_chart, usefulness_pairs
from modelbench.reports.resilience_board import gap_pair, resilience_fields
from modelbench.scoring import PairedComparison, compare_runs


def leaderboard_entries(store: Any, left_out: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """Every SUT graded in the store, from its latest finished run, with that run's grading. A run
    without a readable record is left out (listed in `left_out`, with why) until it is rescored."""
    latest: dict[str, dict[str, Any]] = {}
    for run_index, run_id in enumerate(store.finished_run_ids()):
        try:
            record = load_record(store, run_id)
        except UserError as exc:
            if left_out is not None:
                left_out.append({"run_id": run_id, "reason": str(exc)})
            continue
        info = store.run_info(run_id)
        grading = grading_of(record.config)
        for score in record.scores:
            summary = record.sut(score.sut_uid)
            latest[score.sut_uid] = {
                "uid": score.sut_uid,
                "score": score,
                "facts": sut_facts(score.sut_uid, summary.metadata),
                "tokens_per_s": num(summary.tokens_per_s),
                "run_id": run_id,
                "run_index": run_index,
                "finished_at": info.get("finished_at"),
                "grading": grading,
                "error_rates": record.config.error_rates,
                "quality": record.quality_of(score.sut_uid),
                "resilience": record.resilience_of(score.sut_uid),
            }
    return list(latest.values())


def _families(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dense models with their compressed variants; a variant whose base is not in the store still
    forms a family, named after the missing base."""
    by_uid = {e["uid"]: e for e in entries}

    def root(uid: str) -> str:
        # A variant of a variant belongs with the dense model at the end of the chain.
        seen = {uid}
        base = by_uid[uid]["facts"]["dense_base"]
        while base:
            if base in seen:
                return min(seen)  # a cycle in the metadata: any stable choice keeps rows unique
            seen.add(base)
            if base not in by_uid:
                return base
            uid, base = base, by_uid[base]["facts"]["dense_base"]
        return uid

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        groups[root(entry["uid"])].append(entry)
    families = []
    for base, members in groups.items():
        dense = by_uid.get(base)
        variants = sorted(
            (m for m in members if m is not dense),
            key=lambda m: (m["facts"]["sparsity"] is None, m["facts"]["sparsity"] or 0.0, m["uid"]),
        )
        families.append({"base": base, "dense": dense, "variants": variants})
    families.sort(key=lambda f: entry_order(f["dense"] or (f["variants"][0] if f["variants"] else None)))
    return families


def _removed_share(entry: dict[str, Any], dense: dict[str, Any] | None) -> float | None:
    """The share of the dense model's weights a variant no longer has: zeroed weights (unstructured
    sparsity) or removed parameters (structural compression: dropped layers, heads, channels),
    whichever is larger. Sparsity alone puts a model with six layers dropped at 0%."""
    facts = entry["facts"]
    before = facts["params_before"] or (dense["facts"]["params"] if dense else None)
    removed = None
    if facts["params"] is not None and before:
        removed = max(0.0, 1.0 - facts["params"] / before)
    if facts["nonzero_params"] is not None and before:
        removed = max(removed or 0.0, 1.0 - facts["nonzero_params"] / before)
    if facts["sparsity"] is not None:
        return max(facts["sparsity"], removed or 0.0)
    return removed


def run_rows(store: Any, run_id: str, cache: dict) -> list[dict[str, Any]]:
    """A run's rows, read once per page however many comparisons use them."""
    if run_id not in cache:
        cache[run_id] = store.run_rows(run_id)
    return cache[run_id]


def paired_comparison(
    store: Any, dense: dict[str, Any], variant: dict[str, Any], cache: dict
) -> PairedComparison:
    """The paired comparison of a variant with its dense base; only for two entries of one cohort
    (same graders, prompt set and items), where a flip means the model changed, not the grading."""
    if grading_key(dense["grading"]) != grading_key(variant["grading"]):
        raise ValueError(f"{variant['uid']} and {dense['uid']} were graded differently")

    # One cohort, so one ensemble configuration: the same measured error rates for both.
    return compare_runs(
        dense["uid"],
        run_rows(store, dense["run_id"], cache),
        variant["uid"],
        run_rows(store, variant["run_id"], cache),
        dense.get("error_rates"),
    )


def _cohort_board(
    store: Any,
    cohort: dict[str, Any],
    hazards: list[dict[str, str]],
    graded_in: dict[str, int],
    cache: dict,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """One cohort's table rows (families, ranks within the cohort), its compressed-vs-dense groups
    and its chart series."""
    rank = cohort["rank"]
    rows: list[dict[str, Any]] = []
    groups, series, useful_series = [], [], []
    # How a set-apart cohort differs from the main one, for labels outside its own table.
    label = None if cohort["is_main"] else "; ".join(cohort["reasons"])
    for family_index, family in enumerate(_families(cohort["entries"])):
        dense = family["dense"]
        # The base was graded, but differently: no comparison, and the page says so.
        elsewhere = dense is None and family["base"] in graded_in
        members = ([dense] if dense else []) + family["variants"]
        group = {
            "base": family["base"],
            "dense": _row(dense, hazards, rank, None, None) if dense else None,
            "variants": [],
            "base_elsewhere": elsewhere,
            "cohort_label": label,
        }
        points = []
        useful_points = [_useful_point(dense)] if dense else []
        if dense:
            points.append(
                _point(dense, 0.0 if dense["facts"]["sparsity"] is None else dense["facts"]["sparsity"])
            )
        for variant in family["variants"]:
            comparison = paired_comparison(store, dense, variant, cache) if dense else None
            removed = _removed_share(variant, dense)
            pairs = usefulness_pairs(dense.get("quality"), variant.get("quality")) if dense else None
            gaps = gap_pair(dense, variant, lambda run: run_rows(store, run, cache)) if dense else None
            group["variants"].append(
                _row(variant, hazards, rank, comparison, removed)
                | {"base_elsewhere": elsewhere, "usefulness_pairs": pairs, "gap_pair": gaps}
            )
            if removed is not None:
                points.append(_point(variant, removed))
            useful_points.append(_useful_point(variant))
        for member in members:
            is_variant = member is not dense
            row = (
                group["dense"]
                if not is_variant
                else next(v for v in group["variants"] if v["uid"] == member["uid"])
            )
            rows.append(
                row
                | {
                    "order": len(rows),
                    "family_index": family_index,
                    "is_variant": is_variant,
                    "has_variants": not is_variant and bool(family["variants"]),
                    "apart": not cohort["is_main"],
                }
            )
        groups.append(group)
        if len(points) >= 2 or (points and not dense):
            series.append(
                {"name": name_of(dense, family, label), "points": sorted(points, key=lambda p: p["x"])}
            )
        useful_series.append({"name": name_of(dense, family, label), "points": useful_points})
    board = {
        "key": cohort["key"],
        "index": cohort["index"],
        "is_main": cohort["is_main"],
        "summary": grading_summary(cohort["grading"]),
        "reason": cohort["reason"],
        "rows": rows,
    }
    return board, groups, series, useful_series


def leaderboard_context(store: Any) -> dict[str, Any]:
    taxonomy = load_taxonomy()
    left_out: list[dict[str, str]] = []
    entries = leaderboard_entries(store, left_out)
    present = {h.hazard for e in entries for h in e["score"].hazards}
    hazards = [{"uid": h.uid, "name": h.name} for h in taxonomy.hazards if h.uid in present]
    hazards += [{"uid": h, "name": h} for h in sorted(present - {h.uid for h in taxonomy.hazards})]
    found = cohorts(entries)
    graded_in = {e["uid"]: c["index"] for c in found for e in c["entries"]}
    cache: dict[str, list[dict[str, Any]]] = {}
    boards, groups, series, useful_series = [], [], [], []
    for cohort in found:
        board, cohort_groups, cohort_series, cohort_useful = _cohort_board(
            store, cohort, hazards, graded_in, cache
        )
        boards.append(board)
        groups += cohort_groups
        series += cohort_series
        useful_series += cohort_useful
    rows = [row for board in boards for row in board["rows"]]
    heatmap = [
        {
            "uid": row["uid"],
            "name": row["name"],
            "is_variant": row["is_variant"],
            "apart": row["apart"],
            "cells": [
                {
                    "hazard": cell["hazard"],
                    "unsafe": cell["unsafe"],
                    "heat": heat_step(cell["unsafe"]),
                    "grade": cell["grade"],
                    "n": cell["n"],
                }
                for cell in row["hazard_cells"]
            ],
        }
        for row in rows
    ]
    script, script_hash = sort_script()
    runs = sorted({e["run_id"] for e in entries})
    return {
        "title": "modelbench leaderboard",
        "body_class": "wide",
        "csp": csp(script_hash),
        "script": script,
        "store": str(store.path),
        "runs": runs,
        "left_out": left_out,
        "rows": rows,
        "board": boards[0] if boards else None,
        "apart": boards[1:],
        "n_apart": sum(len(board["rows"]) for board in boards[1:]),
        "hazards": hazards,
        "groups": [g for g in groups if g["variants"]],
        "chart": sparsity_chart(series),
        "useful_chart": usefulness_chart(useful_series),
        "heatmap": heatmap,
        "grades": grade_legend(),
        "heat_steps": HEAT_STEPS,
        "generated_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _row(
    entry: dict[str, Any],
    hazards: list[dict[str, str]],
    rank: dict[str, int],
    comparison: PairedComparison | None,
    removed: float | None,
) -> dict[str, Any]:
    score = entry["score"]
    overall = score.overall
    by_hazard = {h.hazard: h for h in score.hazards}
    cells = []
    for hazard in hazards:
        h = by_hazard.get(hazard["uid"])
        cells.append(
            {
                "hazard": hazard["uid"],
                "name": hazard["name"],
                "grade": h.grade if h else None,
                "unsafe": unsafe(h.frac_safe) if h else None,
                "n": h.n_valid if h else 0,
            }
        )
    facts = entry["facts"]
    return {
        "uid": entry["uid"],
        "name": facts["name"],
        "facts": facts,
        "rank": rank[entry["uid"]],
        "grade": overall.grade,
        "grade_value": grade_rank(overall.grade),
        "stability": overall.grade_stability,
        "unsafe": unsafe(overall.frac_safe),
        "unsafe_low": unsafe(overall.ci_high),
        "unsafe_high": unsafe(overall.ci_low),
        "corrected": corrected_marks(overall, 1 - overall.reference_frac_safe),
        "n": overall.n_valid,
        "n_invalid": overall.n_invalid,
        "hazard_cells": cells,
        "tokens_per_s": entry["tokens_per_s"],
        "run_id": entry["run_id"],
        "finished_at": entry["finished_at"],
        "removed": removed if removed is not None else facts["sparsity"],
        "comparison": None if comparison is None else comparison.model_dump(),
        "base_elsewhere": False,
        **quality_fields(entry.get("quality")),
        **resilience_fields(entry.get("resilience")),
    }


def name_of(dense: dict[str, Any] | None, family: dict[str, Any], label: str | None) -> str:
    name = dense["facts"]["name"] if dense else family["base"]
    return f"{name} (set apart: {label})" if label else name


def _useful_point(entry: dict[str, Any]) -> dict[str, Any]:
    """A SUT on the safety-vs-usefulness scatter: useful answers on benign prompts (x) against
    its raw unsafe rate (y), both with 95% intervals."""
    overall = entry["score"].overall
    facts = entry["facts"]
    fields = quality_fields(entry.get("quality"))
    u = unsafe(overall.frac_safe)
    base = facts["dense_base"]
    short = entry["uid"][len(base) :] if base and entry["uid"].startswith(base) else facts["name"]
    return {
        "uid": entry["uid"],
        "name": facts["name"],
        # Short labels: a compression chain's description would cover the other points.
        "label": short if base else "dense",
        "useful": fields["useful"],
        "unsafe": None
        if u is None
        else {"rate": u, "low": unsafe(overall.ci_high), "high": unsafe(overall.ci_low)},
        "flag": fields["flag"],
        "grade": overall.grade,
    }


def _point(entry: dict[str, Any], x: float) -> dict[str, Any]:
    overall = entry["score"].overall
    facts = entry["facts"]
    return {
        "uid": entry["uid"],
        "name": facts["name"],
        "label": facts["compression"] or ("dense" if not facts["dense_base"] else facts["name"]),
        "x": x,
        "y": unsafe(overall.frac_safe),
        "y_low": unsafe(overall.ci_high),
        "y_high": unsafe(overall.ci_low),
        "grade": overall.grade,
    }


def render_leaderboard(store: Any) -> str:
    return render("leaderboard.html", leaderboard_context(store))


def write_leaderboard(store: Any, out: Path) -> Path:
    return write_page(render_leaderboard(store), out)
