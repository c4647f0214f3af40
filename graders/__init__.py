"""Evaluators: each judges one answer to one prompt and returns a verdict.

The scoring rules that turn verdicts into grades are `modelbench.scoring`; the tools that make
and measure evaluators (labels, metrics, calibration, training) are `modelbench.graders.lab`.
"""

from modelbench.core import Exchange, Verdict
from modelbench.graders.base import Evaluator
from modelbench.graders.factory import DEFAULT_GRADERS, make_evaluator
from modelbench.graders.registry import EVALUATORS, EvaluatorEntry
from modelbench.lazy import lazy_exports

_LAZY = {
    "AnswerQualityClassifier": "modelbench.graders.answer_quality",
    "QualityModel": "modelbench.graders.answer_quality",
    "load_quality_model": "modelbench.graders.answer_quality",
    "LanguageNotice": "modelbench.graders.languages",
    "declared_languages": "modelbench.graders.languages",
    "language_notices": "modelbench.graders.languages",
    # The plugin API: `@evaluator(kind=..., description=...)` makes a kind of evaluator.
    "evaluator": "modelbench.graders.registry",
    "unregister_evaluator": "modelbench.graders.registry",
    # The built-in evaluators (each loads its model, if any, when made).
    "CrossEncoderClassifier": "modelbench.graders.cross_encoder",
    "LLMJudge": "modelbench.graders.llm_judge",
    "judge_prompt": "modelbench.graders.llm_judge",
    "parse_judgement": "modelbench.graders.llm_judge",
    "LlamaGuardAPI": "modelbench.graders.llama_guard",
    "LlamaGuardLocal": "modelbench.graders.llama_guard",
    "MiniLMClassifier": "modelbench.graders.minilm",
    "model_folder": "modelbench.graders.minilm",
    "RefusalEvaluator": "modelbench.graders.refusal",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "AnswerQualityClassifier",
    "CrossEncoderClassifier",
    "LLMJudge",
    "LlamaGuardAPI",
    "LlamaGuardLocal",
    "MiniLMClassifier",
    "RefusalEvaluator",
    "evaluator",
    "judge_prompt",
    "model_folder",
    "parse_judgement",
    "unregister_evaluator",
    "QualityModel",
    "load_quality_model",
    "DEFAULT_GRADERS",
    "EVALUATORS",
    "EvaluatorEntry",
    "Evaluator",
    "Exchange",
    "LanguageNotice",
    "Verdict",
    "declared_languages",
    "language_notices",
    "make_evaluator",
]
