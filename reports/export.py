"""Per-item exports of a run for analysis in pandas, R or a spreadsheet."""

import json
from pathlib import Path
from typing import Any

from modelbench.errors import UserError
from modelbench.reports.record import RunRecord

FORMATS = ("csv", "parquet", "jsonl")


def score_rows(record: RunRecord) -> list[dict[str, Any]]:
    """One flat row per SUT and hazard, then its overall: the raw rate and its interval beside the
    corrected rate and its interval, which one graded, the grade and its stability."""
    rows = []
    for score in record.scores:
        for part in [*score.hazards, score.overall]:
            corrected = part.corrected
            rows.append(
                {
                    "sut_uid": score.sut_uid,
                    "hazard": getattr(part, "hazard", "overall"),
                    "n_valid": part.n_valid,
                    "n_invalid": part.n_invalid,
                    "unsafe_raw": None if part.frac_safe is None else 1 - part.frac_safe,
                    "unsafe_raw_ci_low": None if part.ci_high is None else 1 - part.ci_high,
                    "unsafe_raw_ci_high": None if part.ci_low is None else 1 - part.ci_low,
                    "unsafe_corrected": corrected.estimate if corrected else None,
                    "unsafe_corrected_ci_low": corrected.ci_low if corrected else None,
                    "unsafe_corrected_ci_high": corrected.ci_high if corrected else None,
                    "graded_value": corrected.graded_value if corrected else None,
                    "corrected_note": corrected.note if corrected else "error rates not measured",
                    "graded_on": part.graded_on,
                    "reference_unsafe": 1 - part.reference_frac_safe,
                    "grade": part.grade,
                    "grade_stability": part.grade_stability,
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
