"""Evaluators, the entropy-weighted ensemble, and scoring."""

from modelbench.graders.base import Evaluator, Exchange, Verdict
from modelbench.graders.ensemble import EnsembleConfig, ItemScore, binary_entropy, combine
from modelbench.graders.registry import DEFAULT_GRADERS, EVALUATORS, make_evaluator
from modelbench.graders.scoring import GRADES, SUTScore, grade, score_sut

__all__ = [
    "DEFAULT_GRADERS",
    "EVALUATORS",
    "GRADES",
    "EnsembleConfig",
    "Evaluator",
    "Exchange",
    "ItemScore",
    "SUTScore",
    "Verdict",
    "binary_entropy",
    "combine",
    "grade",
    "make_evaluator",
    "score_sut",
]
