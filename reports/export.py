"""Per-item exports of a run for analysis in pandas, R or a spreadsheet."""

import json
from pathlib import Path
from typing import Any

from modelbench.errors import UserError

FORMATS = ("csv", "parquet", "jsonl")


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
