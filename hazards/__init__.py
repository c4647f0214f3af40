"""The AILuminate v1.0 hazard taxonomy, personas and reference standards."""

from modelbench.hazards.standards import (
    DEFAULT_STANDARD,
    ReferenceStandard,
    builtin_standard_names,
    load_standard,
)
from modelbench.hazards.taxonomy import Hazard, Persona, Subhazard, Taxonomy, load_taxonomy

__all__ = [
    "DEFAULT_STANDARD",
    "Hazard",
    "Persona",
    "ReferenceStandard",
    "Subhazard",
    "Taxonomy",
    "builtin_standard_names",
    "load_standard",
    "load_taxonomy",
]
