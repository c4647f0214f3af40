"""Write prompt sets to CSV or JSONL in the AILuminate column layout, so they re-import as-is."""

import csv
import json
from pathlib import Path

from modelbench.core import TestItem
from modelbench.errors import UserError
from modelbench.hashing import stable_hash

COLUMNS = ("release_prompt_id", "prompt_text", "hazard", "persona", "locale", "prompt_hash", "source")


def _row(item: TestItem) -> dict[str, str]:
    return {
        "release_prompt_id": item.uid,
        "prompt_text": item.text,
        # The subhazard code (spc_hlt, sxc_prn) maps back to hazard and subhazard on import.
        "hazard": item.subhazard or item.hazard,
        "persona": item.persona,
        "locale": item.locale,
        "prompt_hash": stable_hash(item.text, length=40),
        "source": item.source,
    }


def write_items(items: list[TestItem], out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix not in {".csv", ".jsonl"}:
        raise UserError(f"--out must end in .csv or .jsonl, got {out.name}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8", newline="") as handle:
            if suffix == ".csv":
                writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(_row(item) for item in items)
            else:
                for item in items:
                    handle.write(json.dumps(_row(item), ensure_ascii=False) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
