"""Prompt sets: rendered from hazard fragments and templates, or imported from files."""

from importlib import import_module
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)


__all__ = [
    "DEFAULT_PROMPT_SET",
    "PromptSet",
    "TestItem",
    "builtin_set_names",
    "load_prompt_set",
    "stratified_sample",
    "write_items",
]
