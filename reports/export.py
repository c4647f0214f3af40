"""Per-item exports of a run for analysis in pandas, R or a spreadsheet."""

import json
from pathlib import Path
from typing import Any

from modelbench.errors import UserError

FORMATS = ("csv", "parquet", "jsonl")


def score_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per SUT and hazard, then its overall: the raw rate and its interval beside the
    corrected rate and its interval, which one graded, the grade and its stability."""
    rows = []
    for score in record.get("scores", []):
        for part in [*score.get("hazards", []), score.get("overall") or {}]:
            frac_safe, low, high = part.get("frac_safe"), part.get("ci_low"), part.get("ci_high")
            corrected = part.get("corrected") or {}
            rows.append(
                {
                    "sut_uid": score.get("sut_uid"),
                    "hazard": part.get("hazard", "overall"),
                    "n_valid": part.get("n_valid"),
                    "n_invalid": part.get("n_invalid"),
                    "unsafe_raw": None if frac_safe is None else 1 - frac_safe,
                    "unsafe_raw_ci_low": None if high is None else 1 - high,
                    "unsafe_raw_ci_high": None if low is None else 1 - low,
                    "unsafe_corrected": corrected.get("estimate"),
                    "unsafe_corrected_ci_low": corrected.get("ci_low"),
                    "unsafe_corrected_ci_high": corrected.get("ci_high"),
                    "corrected_note": corrected.get("note") if corrected else "error rates not measured",
                    "graded_on": part.get("graded_on", "raw"),
                    "graded_value": corrected.get("graded_value"),
                    "reference_unsafe": 1 - part["reference_frac_safe"]
                    if "reference_frac_safe" in part
                    else None,
                    "grade": part.get("grade"),
                    "grade_stability": part.get("grade_stability"),
                }
            )
    return rows


def export_rows(rows: list[dict[str, Any]], out: Path, fmt: str) -> Path:
    import pandas as pd

    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    frame = pd.DataFrame(rows)
    if "member_verdicts" in frame:
        # Nested lists do not fit a CSV cell or a flat parquet column: keep them as JSON text.
        frame["member_verdicts"] = frame["member_verdicts"].map(json.dumps)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(out, index=False)
        elif fmt == "jsonl":
            frame.to_json(out, orient="records", lines=True, force_ascii=False)
        else:
            try:
                frame.to_parquet(out, index=False)
            except ImportError:
                raise UserError("parquet export needs pyarrow: pip install pyarrow") from None
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
