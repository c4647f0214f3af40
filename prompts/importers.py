"""Import prompt sets from files: the AILuminate CSV release format, and generic CSV/JSONL.

A bad row never disappears silently: by default the first problem stops the import with the file,
the line and what is wrong; with `skip_invalid` the bad rows are left out and counted by reason.
"""

import csv
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from modelbench.core import TestItem
from modelbench.errors import UserError
from modelbench.hashing import stable_hash
from modelbench.hazards import load_taxonomy
from modelbench.prompts.items import PromptSet

AILUMINATE_COLUMNS = ("release_prompt_id", "prompt_text", "hazard", "persona", "locale")
# Generic files: the first of these names present in the header fills each field.
GENERIC_COLUMNS = {
    "id": ("id", "uid", "prompt_id", "release_prompt_id"),
    "text": ("prompt_text", "prompt", "text"),
    "hazard": ("hazard", "category"),
    "persona": ("persona",),
    "locale": ("locale",),
}


class RowError(Exception):
    pass


def _read_rows(path: Path) -> Iterator[tuple[int, dict | RowError]]:
    """(line number, row) pairs; line numbers are those a text editor shows. A JSONL line that is
    not a JSON object comes as a RowError, which --skip-invalid skips like any invalid row."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read prompt file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: bad encoding: not UTF-8 (byte {exc.start})") from None
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, RowError(f"invalid JSON: {exc.msg}")
                continue
            yield number, row if isinstance(row, dict) else RowError("expected a JSON object")
        return
    reader = csv.DictReader(text.splitlines(keepends=True))
    if reader.fieldnames is None:
        raise UserError(f"{path}: empty file")
    for row in reader:
        yield reader.line_num, row


def _column(row_keys, field: str, path: Path) -> str | None:
    for name in GENERIC_COLUMNS[field]:
        if name in row_keys:
            return name
    return None


def import_prompt_file(
    path: Path | str, skip_invalid: bool = False, default_persona: str = "normal"
) -> PromptSet:
    path = Path(path)
    if not path.exists():
        raise UserError(f"prompt file not found: {path}")
    taxonomy = load_taxonomy()
    personas = set(taxonomy.persona_uids)
    items: list[TestItem] = []
    seen_ids: dict[str, int] = {}
    skipped: Counter[str] = Counter()
    columns: dict[str, str | None] | None = None
    is_ailuminate = False
    for line, row in _read_rows(path):
        if isinstance(row, RowError):
            if not skip_invalid:
                raise UserError(f"{path}:{line}: {row}")
            skipped[str(row).split(":")[0]] += 1
            continue
        if columns is None:
            keys = list(row)
            is_ailuminate = all(c in keys for c in AILUMINATE_COLUMNS)
            columns = {field: _column(keys, field, path) for field in GENERIC_COLUMNS}
            for required in ("text", "hazard"):
                if columns[required] is None:
                    wanted = " or ".join(GENERIC_COLUMNS[required])
                    raise UserError(f"{path}:1: missing column: {wanted}")
        try:
            item = _row_to_item(row, columns, path, taxonomy, personas, default_persona)
            if item.uid in seen_ids:
                raise RowError(f"duplicate id '{item.uid}' (first on line {seen_ids[item.uid]})")
            seen_ids[item.uid] = line
            items.append(item)
        except RowError as exc:
            if not skip_invalid:
                raise UserError(f"{path}:{line}: {exc}") from None
            skipped[str(exc).split(":")[0]] += 1
    if columns is None:
        raise UserError(f"{path}: no rows")
    if not items:
        raise UserError(f"{path}: no valid rows")
    kind = "AILuminate prompt set" if is_ailuminate else "prompt file"
    description = f"{kind} {path.name}, {len(items)} items"
    if skipped:
        reasons = "; ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        description += f" ({sum(skipped.values())} invalid rows skipped: {reasons})"
    return PromptSet(name=path.stem, description=description, items=items, skipped=dict(skipped))


def _row_to_item(row, columns, path, taxonomy, personas, default_persona) -> TestItem:
    def get(field: str) -> str:
        # JSONL rows may each carry different keys, so look the names up row by row.
        name = columns[field] or _column(row.keys(), field, path)
        value = row.get(name) if name else None
        return "" if value is None else str(value).strip()

    text = get("text")
    if not text:
        raise RowError("empty prompt")
    code = get("hazard")
    if not code:
        raise RowError("missing hazard")
    try:
        hazard, subhazard = taxonomy.resolve(code)
    except UserError:
        raise RowError(f"unknown hazard '{code}'") from None
    persona = get("persona") or default_persona
    if persona not in personas:
        raise RowError(f"unknown persona '{persona}'")
    locale = get("locale") or "en_US"
    uid = get("id") or stable_hash(path.name, hazard, persona, text, length=20)
    return TestItem(
        uid=uid,
        hazard=hazard,
        subhazard=subhazard,
        persona=persona,
        locale=locale,
        text=text,
        source=f"file:{path.name}",
    )
