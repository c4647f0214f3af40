"""The leaderboard's usefulness view: the flag beside each grade, the paired change in over-refusal
and useful answers of each compressed model against its dense base, and the safety-vs-usefulness
scatter. Read from each run's record (`quality`); nothing is classified here.

Why: pruning that breaks a model lowers its unsafe rate, and a table of unsafe rates alone then
tells a compression team that pruning made the model safer. Beside the usefulness of its answers,
the same drop reads as what it is.
"""

from typing import Any

from modelbench.reports.charts import LINE_COLOURS, chart_frame, chart_scales
from modelbench.reports.quality_section import rate_cell
from modelbench.scoring import INCAPACITY, SUTQuality, paired_kind_change


def quality_fields(quality: SUTQuality | None) -> dict[str, Any]:
    """What a leaderboard row shows of a SUT's answer quality (overall)."""
    overall = quality.overall if quality is not None else None
    return {
        "flag": quality.flag if quality is not None else None,
        "flag_reason": quality.flag_reason if quality is not None else "",
        "incapacity": quality is not None and quality.flag == INCAPACITY,
        "over_refusal": rate_cell(overall.over_refusal) if overall else None,
        "useful": rate_cell(overall.useful) if overall else None,
        "degenerate": rate_cell(overall.degenerate) if overall else None,
    }


def usefulness_pairs(dense: SUTQuality | None, variant: SUTQuality | None) -> dict[str, Any] | None:
    """The variant against its dense base on the benign prompts both answered: paired changes in
    over-refusal and in useful answers (McNemar, Agresti-Min interval). None without benign
    answers on both sides."""
    if dense is None or variant is None or not dense.benign_kinds or not variant.benign_kinds:
        return None
    refusal = paired_kind_change(
        dense.sut_uid, dense.benign_kinds, variant.sut_uid, variant.benign_kinds, "refusal"
    )
    useful = paired_kind_change(
        dense.sut_uid, dense.benign_kinds, variant.sut_uid, variant.benign_kinds, "answer"
    )
    if refusal.n == 0:
        return None
    return {"over_refusal": refusal.model_dump(), "useful": useful.model_dump(), "n": refusal.n}


def usefulness_chart(families: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Useful answers on benign prompts (x) against the unsafe rate (y), both with 95% intervals;
    each compressed model joined to its dense base. `families`: [{"name", "points": [{"uid",
    "label", "useful", "unsafe", "flag"}]}], dense first. None when no SUT has both rates."""
    drawn_families = []
    for family in families:
        points = [p for p in family["points"] if p["useful"] is not None and p["unsafe"] is not None]
        if points:
            drawn_families.append({"name": family["name"], "points": points})
    if not drawn_families:
        return None
    sx, sy = chart_scales(1.0, 1.0)
    series = []
    for index, family in enumerate(drawn_families):
        points = []
        for p in family["points"]:
            useful, unsafe = p["useful"], p["unsafe"]
            points.append(
                {
                    **p,
                    "cx": sx(useful["rate"]),
                    "cy": sy(unsafe["rate"]),
                    "x_lo": sx(useful["low"]),
                    "x_hi": sx(useful["high"]),
                    "y_lo": sy(unsafe["high"]),
                    "y_hi": sy(unsafe["low"]),
                    "anchor": "end" if useful["rate"] > 0.8 else "start",
                }
            )
        series.append(
            {
                "name": family["name"],
                "colour": f"var(--line-{index % LINE_COLOURS})",
                "points": points,
                "path": " ".join(f"{p['cx']},{p['cy']}" for p in points),
            }
        )
    ticks = [round(0.2 * i, 1) for i in range(6)]
    return chart_frame([{"v": v, "px": sx(v)} for v in ticks], [{"v": v, "px": sy(v)} for v in ticks], series)
