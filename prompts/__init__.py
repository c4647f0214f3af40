"""Prompt sets: rendered from hazard fragments and templates, or imported from files."""

from modelbench.lazy import lazy_exports
from modelbench.prompts.items import TestItem
from modelbench.prompts.sampling import stratified_sample
from modelbench.prompts.sets import (
    DEFAULT_PROMPT_SET,
    PromptSet,
    builtin_set_names,
    load_prompt_set,
)

_LAZY = {
    "write_items": "modelbench.prompts.export",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "DEFAULT_PROMPT_SET",
    "PromptSet",
    "TestItem",
    "builtin_set_names",
    "load_prompt_set",
    "stratified_sample",
    "write_items",
]
