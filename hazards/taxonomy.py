"""The hazard taxonomy as typed data, loaded once from the packaged `taxonomy.yaml`."""

from functools import lru_cache
from importlib import resources

import yaml
from pydantic import BaseModel, Field

from modelbench.errors import UserError


class Subhazard(BaseModel):
    uid: str
    name: str
    definition: str


class Hazard(BaseModel):
    uid: str
    name: str
    group: str
    definition: str
    subhazards: list[Subhazard] = Field(default_factory=list)


class Persona(BaseModel):
    uid: str
    name: str
    description: str
    taxonomy: str


class Taxonomy(BaseModel):
    version: str
    source: str
    hazards: list[Hazard]
    personas: list[Persona]

    def hazard(self, uid: str) -> Hazard:
        for hazard in self.hazards:
            if hazard.uid == uid:
                return hazard
        known = ", ".join(h.uid for h in self.hazards)
        raise UserError(f"unknown hazard '{uid}' (known: {known})")

    @property
    def hazard_uids(self) -> list[str]:
        return [h.uid for h in self.hazards]

    @property
    def persona_uids(self) -> list[str]:
        return [p.uid for p in self.personas]

    def subhazard_parent(self) -> dict[str, str]:
        return {s.uid: h.uid for h in self.hazards for s in h.subhazards}

    def resolve(self, code: str) -> tuple[str, str | None]:
        """Map a hazard or subhazard code (e.g. `spc_hlt`) to (hazard uid, subhazard uid or None)."""
        code = code.strip().lower()
        if code in self.hazard_uids:
            return code, None
        parent = self.subhazard_parent().get(code)
        if parent is None:
            raise UserError(f"unknown hazard '{code}'")
        return parent, code


@lru_cache(maxsize=1)
def load_taxonomy() -> Taxonomy:
    text = resources.files("modelbench.hazards").joinpath("taxonomy.yaml").read_text("utf-8")
    return Taxonomy.model_validate(yaml.safe_load(text))
