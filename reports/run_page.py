"""The context of one run's report page: per SUT its grade bands, personas and flagged items, then
the instrument, the configuration and the run's facts. Everything is read from the run's record
and its per-item rows; nothing is scored here."""

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from modelbench.core import is_baseline
from modelbench.hazards import load_taxonomy
from modelbench.reports.charts import HEAT_STEPS, band_row, band_ticks, heat_step
from modelbench.reports.evaluators import ensemble_section, evaluator_error, grading_basis
from modelbench.reports.facts import sut_facts
from modelbench.reports.formatting import (
    MAX_NOTE_CHARS,
    MAX_TEXT_CHARS,
    clip,
    flat,
    grade_legend,
    num,
    unsafe,
)
from modelbench.reports.loading import RunData, load_run
from modelbench.reports.pages import csp, render, write_page
from modelbench.reports.quality_section import MAX_LISTED_BENIGN, quality_context
from modelbench.reports.record import SUTSummary
from modelbench.reports.resilience_section import resilience_context
from modelbench.scoring import SUTQuality, SUTResilience, SUTScore, clopper_pearson

# Items listed per SUT; the rest are a `modelbench export` away.
MAX_LISTED_ITEMS = 200


def _personas(score: SUTScore, hazard_names: dict[str, str], persona_names: dict[str, str]) -> dict:
    personas = sorted({p for h in score.hazards for p in h.personas}, key=_persona_order(persona_names))
    rows = []
    for persona in personas:
        n_valid = n_safe = n = 0
        cells = []
        for hazard in score.hazards:
            tally = hazard.personas.get(persona)
            u = unsafe(tally.frac_safe) if tally else None
            cells.append(
                {
                    "hazard": hazard.hazard,
                    "unsafe": u,
                    "n": tally.n_valid if tally else 0,
                    "heat": heat_step(u),
                }
            )
            if tally:
                n_valid += tally.n_valid
                n_safe += tally.n_safe
                n += tally.n
        # The record keeps per-hazard tallies; a persona pooled over hazards is their sum, with the
        # exact (Clopper-Pearson) interval of that sum.
        interval = clopper_pearson(n_safe, n_valid)
        u = (n_valid - n_safe) / n_valid if n_valid else None
        rows.append(
            {
                "uid": persona,
                "name": persona_names.get(persona, persona),
                "n": n,
                "n_valid": n_valid,
                "unsafe": u,
                "unsafe_low": None if interval is None else 1 - interval[1],
                "unsafe_high": None if interval is None else 1 - interval[0],
                "heat": heat_step(u),
                "cells": cells,
            }
        )
    return {
        "hazards": [{"uid": h.hazard, "name": hazard_names.get(h.hazard, h.hazard)} for h in score.hazards],
        "rows": rows,
    }


def _persona_order(names: dict[str, str]):
    order = list(names)
    return lambda p: (order.index(p) if p in order else len(order), p)


def _items(rows: list[dict[str, Any]], hazard_names: dict[str, str], persona_names: dict[str, str]) -> dict:
    """Unsafe and uncertain items, most worrying first: unsafe and uncertain, then by p(unsafe)."""
    flagged = [r for r in rows if r["is_safe"] is False or r["uncertain"]]
    flagged.sort(key=lambda r: (not (r["is_safe"] is False and r["uncertain"]), -(r["p_unsafe"] or 0.0)))
    shown = []
    for row in flagged[:MAX_LISTED_ITEMS]:
        members = [
            {
                "evaluator": m.get("evaluator_uid", "?"),
                "p_unsafe": num(m.get("p_unsafe")),
                "categories": ", ".join(str(c) for c in m.get("categories") or []),
                "note": clip(str(m.get("raw") or ""), MAX_NOTE_CHARS),
            }
            for m in row["member_verdicts"]
        ]
        response = row["response"]
        shown.append(
            {
                "item_uid": row["item_uid"],
                "hazard": row["hazard"],
                "hazard_name": hazard_names.get(row["hazard"], row["hazard"]),
                "subhazard": row.get("subhazard"),
                "persona": persona_names.get(row["persona"], row["persona"]),
                "outcome": row.get("outcome"),
                "p_unsafe": row["p_unsafe"],
                "entropy": row["entropy"],
                "unsafe": row["is_safe"] is False,
                "uncertain": row["uncertain"],
                "prompt": clip(row["prompt"]),
                "excerpt": clip(" ".join((row["prompt"] or "")[:300].split()), 140),
                "response": clip(response if response is not None else row.get("error")),
                "is_error": response is None and bool(row.get("error")),
                "members": members,
            }
        )
    return {
        "n_unsafe": sum(1 for r in flagged if r["is_safe"] is False),
        "n_uncertain": sum(1 for r in flagged if r["uncertain"]),
        "n_flagged": len(flagged),
        "shown": shown,
    }


def _sut_section(
    index: int,
    score: SUTScore,
    summary: SUTSummary,
    rows: list[dict[str, Any]],
    hazard_names: dict[str, str],
    persona_names: dict[str, str],
    quality: SUTQuality | None = None,
    resilience: SUTResilience | None = None,
) -> dict[str, Any]:
    # Benign prompts (over-refusal) are not graded for safety: they show in the quality section.
    hazard_rows = [r for r in rows if is_baseline(r["source"])]
    hazards = [
        band_row(hazard_names.get(h.hazard, h.hazard), h.hazard, h, 1 - h.reference_frac_safe)
        for h in score.hazards
    ]
    overall = band_row("Overall", "overall", score.overall, 1 - score.overall.reference_frac_safe)
    outcomes = Counter(r["outcome"] or "missing" for r in rows)
    return {
        "anchor": f"sut-{index + 1}",
        "uid": score.sut_uid,
        "facts": sut_facts(score.sut_uid, summary.metadata),
        "overall": overall,
        "hazards": hazards,
        "personas": _personas(score, hazard_names, persona_names),
        "flagged": _items(hazard_rows, hazard_names, persona_names),
        "quality": quality_context(quality, rows, hazard_names),
        "resilience": resilience_context(resilience, rows, hazard_names),
        "metadata": flat("", summary.metadata, []),
        "throughput": {
            "tokens_per_s": num(summary.tokens_per_s),
            "generation_s": num(summary.generation_s),
            "completion_tokens_new": summary.completion_tokens_new,
            "responses_new": summary.responses_new,
            "responses_reused": summary.responses_reused,
            "response_errors": summary.response_errors,
        },
        "outcomes": sorted(outcomes.items()),
    }


def run_context(data: RunData) -> dict[str, Any]:
    taxonomy = load_taxonomy()
    hazard_names = {h.uid: h.name for h in taxonomy.hazards}
    persona_names = {p.uid: p.name for p in taxonomy.personas}
    record = data.record
    rows_by_sut: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in data.rows:
        rows_by_sut[row["sut_uid"]].append(row)
    suts = [
        _sut_section(
            index,
            score,
            record.sut(score.sut_uid),
            rows_by_sut.get(score.sut_uid, []),
            hazard_names,
            persona_names,
            record.quality_of(score.sut_uid),
            record.resilience_of(score.sut_uid),
        )
        for index, score in enumerate(data.scores)
    ]
    config, timing = record.config, record.timing
    prompt_set, standard = config.prompt_set, config.standard
    return {
        "title": f"modelbench report · {', '.join(s['facts']['name'] for s in suts) or data.run_id}",
        "csp": csp(None),
        "run_id": data.run_id,
        "reconstructed": record.reconstructed,
        "suts": suts,
        "ensemble": ensemble_section(record, data.scores, {s["uid"]: s["facts"]["name"] for s in suts}),
        "prompt_set": prompt_set.model_dump(include={"name", "description", "n_items", "max_items", "seed"}),
        "standard": {"name": standard.name, "provenance": standard.provenance or {}},
        "over_refusal": None if config.over_refusal is None else config.over_refusal.model_dump(),
        "sut_options": flat("", config.sut_options, []),
        "versions": sorted(record.versions.items()),
        # The counts the record has: one from before a count existed does not show it as 0.
        "counts": list(record.counts.model_dump(exclude_unset=True).items()),
        "evaluator_error": evaluator_error(config),
        "grading_basis": grading_basis(config),
        "min_items": config.request.min_items,
        # Failures by reason, as the console showed them (modelbench.failures.ErrorGroup dicts).
        "errors": record.errors,
        "started_at": timing.started_at or data.info.get("started_at"),
        "finished_at": data.info.get("finished_at"),
        "wall_s": num(timing.wall_s),
        "config_json": clip(json.dumps(config.model_dump(mode="json"), indent=2, default=str), 200_000),
        "band_ticks": band_ticks(),
        "max_text": MAX_TEXT_CHARS,
        "max_listed": MAX_LISTED_ITEMS,
        "max_listed_benign": MAX_LISTED_BENIGN,
        "grades": grade_legend(),
        "heat_steps": HEAT_STEPS,
    }


def render_run_report(store: Any, run_id: str) -> str:
    """One finished run's page (its stored record; nothing is re-scored)."""
    return render("run_report.html", run_context(load_run(store, run_id)))


def write_run_report(store: Any, run_id: str, out: Path) -> Path:
    return write_page(render_run_report(store, run_id), out)
