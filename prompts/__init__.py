"""Prompt sets: rendered from hazard fragments and templates, or imported from files."""

from modelbench.core import TestItem, is_baseline, is_benign
from modelbench.lazy import lazy_exports
from modelbench.prompts.benign import BENIGN_SET, GENERAL, proportional_sample
from modelbench.prompts.sampling import stratified_sample
from modelbench.prompts.sets import (
    DEFAULT_PROMPT_SET,
    PromptSet,
    builtin_set_names,
    load_benign_set,
    load_prompt_set,
)

_LAZY = {
    "write_items": "modelbench.prompts.export",
    "import_prompt_file": "modelbench.prompts.importers",
    "render_all": "modelbench.prompts.render",
    # The benign (over-refusal) items: XSTest's safe prompts and the hazards' benign twins.
    "TWIN_KINDS": "modelbench.prompts.benign",
    "benign_items": "modelbench.prompts.benign",
    "load_twins": "modelbench.prompts.benign",
    "twin_items": "modelbench.prompts.benign",
    "xstest_items": "modelbench.prompts.benign",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "BENIGN_SET",
    "DEFAULT_PROMPT_SET",
    "GENERAL",
    "PromptSet",
    "TWIN_KINDS",
    "TestItem",
    "benign_items",
    "builtin_set_names",
    "import_prompt_file",
    "is_baseline",
    "is_benign",
    "load_benign_set",
    "load_prompt_set",
    "load_twins",
    "proportional_sample",
    "render_all",
    "stratified_sample",
    "twin_items",
    "write_items",
    "xstest_items",
]
