"""Evaluators: each judges one answer to one prompt and returns a verdict.

The scoring rules that turn verdicts into grades are `modelbench.scoring`; the tools that make
and measure evaluators (labels, metrics, calibration, training) are `modelbench.graders.lab`.
"""

from importlib import import_module
from typing import Any

from modelbench.graders.base import Evaluator, Exchange, Verdict
from modelbench.graders.registry import DEFAULT_GRADERS, EVALUATORS, make_evaluator

_LAZY = {
    "LanguageNotice": "modelbench.graders.languages",
    "declared_languages": "modelbench.graders.languages",
    "language_notices": "modelbench.graders.languages",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)


__all__ = [
    "DEFAULT_GRADERS",
    "EVALUATORS",
    "Evaluator",
    "Exchange",
    "LanguageNotice",
    "Verdict",
    "declared_languages",
    "language_notices",
    "make_evaluator",
]
