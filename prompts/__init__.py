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
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "BENIGN_SET",
    "DEFAULT_PROMPT_SET",
    "GENERAL",
    "PromptSet",
    "TestItem",
    "builtin_set_names",
    "is_baseline",
    "is_benign",
    "load_benign_set",
    "load_prompt_set",
    "proportional_sample",
    "stratified_sample",
    "write_items",
]
