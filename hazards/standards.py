"""Reference standards: per-hazard safe fractions of reference SUTs that grades are relative to."""

import json
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ValidationError

from modelbench.errors import UserError

DEFAULT_STANDARD = "ailuminate-1.0-practice"


class ReferenceStandard(BaseModel):
    name: str
    description: str = ""
    provenance: dict
    frac_safe: dict[str, float]

    def reference_unsafe(self, hazard: str) -> float:
        if hazard not in self.frac_safe:
            raise UserError(f"reference standard '{self.name}' has no value for hazard '{hazard}'")
        return 1.0 - self.frac_safe[hazard]


def builtin_standard_names() -> list[str]:
    folder = resources.files("modelbench.hazards").joinpath("standards")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_standard(
    name_or_path: str = DEFAULT_STANDARD, search: list[Path] | None = None
) -> ReferenceStandard:
    """A built-in standard by name, a standard named in a search folder (`<name>.json`, such as
    calibrated standards under the run dir), or a standards JSON file by path."""
    for folder in search or []:
        candidate = Path(folder) / f"{name_or_path}.json"
        if name_or_path not in builtin_standard_names() and candidate.is_file():
            name_or_path = str(candidate)
            break
    if name_or_path in builtin_standard_names():
        text = (
            resources.files("modelbench.hazards")
            .joinpath("standards", f"{name_or_path}.json")
            .read_text("utf-8")
        )
        source = name_or_path
    else:
        path = Path(name_or_path)
        if not path.is_file():
            known = ", ".join(builtin_standard_names())
            where = "".join(f"; looked for {Path(f) / (name_or_path + '.json')}" for f in search or [])
            raise UserError(
                f"unknown reference standard '{name_or_path}' (built in: {known}{where}; or a JSON file path)"
            )
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read standards file {path}: {exc}") from None
        source = str(path)
    try:
        return ReferenceStandard.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"invalid standards file {source}: {first}") from None
