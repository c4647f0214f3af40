"""Reading and writing the small JSON files users keep (standards, reliabilities, evaluator
heads and cards), with one-line errors."""

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from modelbench.errors import UserError

Model = TypeVar("Model", bound=BaseModel)


def read_model(path: Path, model: type[Model], what: str) -> tuple[Model, str]:
    """(the file parsed as `model`, sha256 of its bytes); `what` names it in the error line."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UserError(f"cannot read the {what} {path}: {error.strerror}") from None
    try:
        parsed = model.model_validate(json.loads(data))
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as error:
        first = str(error).splitlines()[0]
        raise UserError(f"{path}: not a {what} file ({first})") from None
    return parsed, hashlib.sha256(data).hexdigest()


def write_json(data: Any, out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
