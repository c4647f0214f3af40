"""The report's answer-quality section of one SUT: over-refusal and useful answers on benign
prompts, degenerate answers on hazard prompts, the flag, and the refused or degenerate benign
answers (behind a disclosure). Read from the record's `quality` and the run's rows; nothing is
classified here."""

from typing import Any

from modelbench.core import is_benign
from modelbench.prompts import GENERAL
from modelbench.reports.formatting import clip
from modelbench.scoring import QualityRate, SUTQuality

# Benign answers listed per SUT; the rest are a `modelbench export` away.
MAX_LISTED_BENIGN = 100
KIND_ORDER = {"refusal": 0, "degenerate": 1}


def rate_cell(rate: QualityRate | None) -> dict[str, Any] | None:
    if rate is None:
        return None
    c = rate.corrected
    corrected = c is not None and c.identifiable and c.estimate is not None
    return {
        "k": rate.k,
        "n": rate.n,
        "rate": rate.rate,
        "low": rate.ci_low,
        "high": rate.ci_high,
        "corrected": c.estimate if corrected else None,  # type: ignore[union-attr]
        "corrected_low": c.ci_low if corrected else None,  # type: ignore[union-attr]
        "corrected_high": c.ci_high if corrected else None,  # type: ignore[union-attr]
        "note": "" if corrected or c is None else c.note,
    }


def quality_context(
    quality: SUTQuality | None, rows: list[dict[str, Any]], hazard_names: dict[str, str]
) -> dict[str, Any] | None:
    """None for a record written before answers were classified."""
    if quality is None:
        return None
    names = {**hazard_names, GENERAL: "Benign prompts of no one hazard"}
    table = [
        {
            "uid": score.hazard,
            "label": "Overall" if score is quality.overall else names.get(score.hazard, score.hazard),
            "n_benign": score.n_benign,
            "n_hazard": score.n_hazard,
            "over_refusal": rate_cell(score.over_refusal),
            "useful": rate_cell(score.useful),
            "degenerate": rate_cell(score.degenerate),
        }
        for score in [*quality.hazards, quality.overall]
    ]
    listed = [
        (quality.benign_kinds[r["item_uid"]], r)
        for r in rows
        if is_benign(r["source"]) and quality.benign_kinds.get(r["item_uid"]) in KIND_ORDER
    ]
    listed.sort(key=lambda pair: (KIND_ORDER[pair[0]], pair[1]["hazard"], pair[1]["item_uid"]))
    shown = [
        {
            "item_uid": row["item_uid"],
            "kind": kind,
            "hazard": row["hazard"],
            "hazard_name": names.get(row["hazard"], row["hazard"]),
            "origin": str(row["source"]).split(":", 1)[-1],
            "prompt": clip(row["prompt"]),
            "response": clip(row["response"]),
        }
        for kind, row in listed[:MAX_LISTED_BENIGN]
    ]
    return {
        "flag": quality.flag,
        "flag_reason": quality.flag_reason,
        "unmeasured_locales": quality.unmeasured_locales,
        "has_benign": quality.overall.n_benign > 0,
        "table": table,
        "n_refused": sum(1 for kind in quality.benign_kinds.values() if kind == "refusal"),
        "n_degenerate_benign": sum(1 for kind in quality.benign_kinds.values() if kind == "degenerate"),
        "n_degenerate_hazard": len(quality.degenerate_items),
        "shown": shown,
        "n_listed": len(listed),
    }
