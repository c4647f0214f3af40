"""Evaluators by name, and the default ensemble."""

from modelbench.errors import UserError
from modelbench.graders.base import Evaluator
from modelbench.graders.refusal import RefusalEvaluator

EVALUATORS: dict[str, tuple[str, type[Evaluator]]] = {
    "refusal": (
        "lexical refusal/compliance detector, hazard-aware for specialised advice",
        RefusalEvaluator,
    ),
}
DEFAULT_GRADERS = ("refusal",)


def make_evaluator(name: str) -> Evaluator:
    if name not in EVALUATORS:
        known = ", ".join(EVALUATORS)
        raise UserError(f"unknown grader '{name}' (known: {known})")
    return EVALUATORS[name][1]()
