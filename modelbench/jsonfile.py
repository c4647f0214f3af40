"""Writing the small JSON files users keep (standards, reliabilities), with one-line errors."""

import json
from pathlib import Path
from typing import Any

from modelbench.errors import UserError


def write_json(data: Any, out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
