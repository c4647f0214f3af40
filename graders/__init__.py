"""Evaluators: each judges one answer to one prompt and returns a verdict.

The scoring rules that turn verdicts into grades are `modelbench.scoring`; the tools that make
and measure evaluators (labels, metrics, calibration, training) are `modelbench.graders.lab`.
"""

from modelbench.graders.base import Evaluator, Exchange, Verdict
from modelbench.graders.registry import DEFAULT_GRADERS, EVALUATORS, make_evaluator

__all__ = ["DEFAULT_GRADERS", "EVALUATORS", "Evaluator", "Exchange", "Verdict", "make_evaluator"]
