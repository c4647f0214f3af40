"""Evaluators: each judges one answer to one prompt and returns a verdict.

The scoring rules that turn verdicts into grades are `modelbench.scoring`; the tools that make
and measure evaluators (labels, metrics, calibration, training) are `modelbench.graders.lab`.
"""

from modelbench.core import Exchange, Verdict
from modelbench.graders.base import Evaluator
from modelbench.graders.registry import DEFAULT_GRADERS, EVALUATORS, make_evaluator
from modelbench.lazy import lazy_exports

_LAZY = {
    "AnswerQualityClassifier": "modelbench.graders.answer_quality",
    "QualityModel": "modelbench.graders.answer_quality",
    "load_quality_model": "modelbench.graders.answer_quality",
    "LanguageNotice": "modelbench.graders.languages",
    "declared_languages": "modelbench.graders.languages",
    "language_notices": "modelbench.graders.languages",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "AnswerQualityClassifier",
    "QualityModel",
    "load_quality_model",
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
