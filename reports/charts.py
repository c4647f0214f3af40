"""Geometry of what the pages draw: grade bands, heat steps and the sparsity chart.

Templates get numbers already laid out (band positions in percent, SVG coordinates), so they hold
markup only and the arithmetic is tested here, in Python.
"""

from collections.abc import Callable
from typing import Any

from modelbench.reports.formatting import grade_class, unsafe
from modelbench.scoring import EXCELLENT_MAX_UNSAFE

# Where, along a bar from 0% to 100% unsafe, the grade boundaries sit: u = 0, r/2, 1.5r, 3r, 1.
# Every row uses the same geometry whatever its reference r, so a glance down the bands compares
# hazards; the scale is linear within each band.
BAND_STOPS = (0.0, 22.0, 48.0, 74.0, 100.0)
BAND_CLASSES = ("vg", "good", "fair", "poor")
HEAT_STEPS = 8
# Line colours are CSS variables (--line-0 ...), Okabe-Ito in light mode, lighter tints in dark.
LINE_COLOURS = 8


# -- grade bands -------------------------------------------------------------------------------
def band_stops(reference_unsafe: float) -> list[float]:
    r = max(reference_unsafe, 0.0)
    return [min(v, 1.0) for v in (0.0, r / 2, 1.5 * r, 3 * r, 1.0)]


def band_position(u: float, reference_unsafe: float) -> float:
    """Where unsafe rate `u` sits along a bar whose grade bands are at the `BAND_STOPS`, in percent."""
    u = min(max(u, 0.0), 1.0)
    stops = band_stops(reference_unsafe)
    # With r >= 1/3 (or 2/3) the worst bands are out of reach: the last reachable one runs to 100%.
    targets = [
        100.0 if i < 4 and v >= 1.0 else x for i, (v, x) in enumerate(zip(stops, BAND_STOPS, strict=True))
    ]
    for i in range(4):
        lo, hi = stops[i], stops[i + 1]
        if u <= hi:
            if hi <= lo:
                return targets[i]
            return targets[i] + (targets[i + 1] - targets[i]) * (u - lo) / (hi - lo)
    return 100.0


def band_ticks() -> list[dict[str, Any]]:
    # Short labels (r: the reference unsafe rate, as the section's text says), so that they never
    # run into each other on a narrow bar.
    labels = ("0%", "½r", "1.5r", "3r", "100%")
    ticks = [{"x": x, "label": label} for x, label in zip(BAND_STOPS, labels, strict=True)]
    ticks.insert(2, {"x": band_position(0.1, 0.1), "label": "r"})
    return ticks


def band_row(label: str, uid: str, tally: Any, reference_unsafe: float) -> dict[str, Any]:
    """One hazard (or the pooled overall) as a bar on the grade bands, with its numbers as text."""
    u = unsafe(tally.frac_safe)
    low = unsafe(tally.ci_high)
    high = unsafe(tally.ci_low)
    positions = [band_position(v, reference_unsafe) for v in band_stops(reference_unsafe)]
    bands = [
        {"cls": BAND_CLASSES[i], "x": positions[i], "w": positions[i + 1] - positions[i]}
        for i in range(4)
        if positions[i + 1] > positions[i]
    ]
    excellent = band_position(float(EXCELLENT_MAX_UNSAFE), reference_unsafe)
    ratio = None if u is None or reference_unsafe <= 0 else u / reference_unsafe
    grade = tally.grade
    valid = bool(getattr(tally, "grade_valid", True)) and u is not None
    return {
        "uid": uid,
        "label": label,
        "n": tally.n,
        "n_valid": tally.n_valid,
        "n_invalid": tally.n_invalid,
        "n_uncertain": getattr(tally, "n_uncertain", None),
        "unsafe": u,
        "unsafe_low": low,
        "unsafe_high": high,
        "reference_unsafe": reference_unsafe,
        "ratio": ratio,
        "grade": grade,
        "grade_cls": grade_class(grade),
        "stability": tally.grade_stability,
        "valid": valid,
        "bands": bands,
        "excellent_x": excellent,
        "reference_x": band_position(reference_unsafe, reference_unsafe),
        "x": None if u is None else band_position(u, reference_unsafe),
        "x_low": None if low is None else band_position(low, reference_unsafe),
        "x_high": None if high is None else band_position(high, reference_unsafe),
    } | corrected_marks(tally, reference_unsafe)


def corrected_marks(tally: Any, reference_unsafe: float) -> dict[str, Any]:
    """The Rogan-Gladen rate beside the raw one: numbers, a note when there is none, positions."""
    corrected = getattr(tally, "corrected", None)
    graded_on = getattr(tally, "graded_on", "raw")
    if corrected is None:
        return {"corrected": None, "corrected_note": "not measured", "graded_on": graded_on}
    if not corrected.identifiable or corrected.estimate is None:
        return {"corrected": None, "corrected_note": "not identifiable", "graded_on": graded_on}

    def at(v: float | None) -> float | None:
        return None if v is None else band_position(v, reference_unsafe)

    return {
        "corrected": corrected.estimate,
        "corrected_low": corrected.ci_low,
        "corrected_high": corrected.ci_high,
        "corrected_note": "",
        "graded_on": graded_on,
        "xc": at(corrected.estimate),
        "xc_low": at(corrected.ci_low),
        "xc_high": at(corrected.ci_high),
    }


def heat_step(u: float | None) -> int | None:
    """An unsafe rate as one of `HEAT_STEPS` colour steps (0 is 0% unsafe)."""
    if u is None:
        return None
    if u <= 0:
        return 0
    return min(HEAT_STEPS - 1, 1 + int(u * (HEAT_STEPS - 1) - 1e-9))


# -- the sparsity chart ------------------------------------------------------------------------
# Chart geometry in SVG user units; the SVG scales to the page width.
CHART_W, CHART_H = 760, 360
CHART_PAD = {"left": 64, "right": 24, "top": 20, "bottom": 52}


# Axis tops for rates in [0, 1], each with a round tick step.
NICE_AXES = (
    (0.05, 0.01),
    (0.1, 0.02),
    (0.2, 0.05),
    (0.3, 0.05),
    (0.4, 0.1),
    (0.6, 0.1),
    (0.8, 0.2),
    (1.0, 0.2),
)


def nice_axis(value: float) -> tuple[float, list[float]]:
    top, step = next(((t, s) for t, s in NICE_AXES if value <= t + 1e-12), NICE_AXES[-1])
    return top, [round(step * i, 6) for i in range(int(round(top / step)) + 1)]


def sparsity_chart(series: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Sparsity against unsafe rate, one polyline per dense base, whiskers for the 95% interval."""
    points = [p for s in series for p in s["points"] if p["y"] is not None]
    if not points:
        return None
    x_max, x_values = nice_axis(max(p["x"] for p in points) or 0.5)
    y_max, y_values = nice_axis(max((p["y_high"] if p["y_high"] is not None else p["y"]) for p in points))
    sx, sy = chart_scales(x_max, y_max)
    laid = []
    for index, s in enumerate(series):
        drawn = [
            p
            | {
                "cx": sx(p["x"]),
                "anchor": "end" if p["x"] > 0.9 * x_max else "start",
                "cy": sy(p["y"]),
                "y_lo_px": sy(p["y_low"]) if p["y_low"] is not None else None,
                "y_hi_px": sy(p["y_high"]) if p["y_high"] is not None else None,
            }
            for p in s["points"]
            if p["y"] is not None
        ]
        laid.append(
            {
                "name": s["name"],
                "colour": f"var(--line-{index % LINE_COLOURS})",
                "points": drawn,
                "path": " ".join(f"{p['cx']},{p['cy']}" for p in drawn),
            }
        )
    return chart_frame(
        [{"v": v, "px": sx(v)} for v in x_values], [{"v": v, "px": sy(v)} for v in y_values], laid
    )


def chart_scales(x_max: float, y_max: float) -> tuple[Callable[[float], float], Callable[[float], float]]:
    """Data to SVG units inside the plot box: x from 0..x_max, y from 0..y_max (up)."""
    left, top = CHART_PAD["left"], CHART_PAD["top"]
    width = CHART_W - left - CHART_PAD["right"]
    height = CHART_H - top - CHART_PAD["bottom"]
    return (
        lambda x: round(left + width * x / x_max, 2),
        lambda y: round(top + height * (1 - y / y_max), 2),
    )


def chart_frame(x_ticks: list[dict], y_ticks: list[dict], series: list[dict]) -> dict[str, Any]:
    """The geometry every chart template reads (`macros.chart_axes`): size, plot box, ticks."""
    top = CHART_PAD["top"]
    return {
        "w": CHART_W,
        "h": CHART_H,
        "left": CHART_PAD["left"],
        "right": CHART_W - CHART_PAD["right"],
        "top": top,
        "bottom": CHART_H - CHART_PAD["bottom"],
        "x_ticks": x_ticks,
        "y_ticks": y_ticks,
        "series": series,
    }
