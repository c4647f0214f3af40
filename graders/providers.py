"""The built-in evaluators: one small registered factory per grader kind.

Each factory imports its evaluator's module when called, not when this file is imported, so
listing graders or parsing specs loads neither torch nor transformers. Registration order is the
order of `modelbench.specs.GRADER_KINDS` (and so of `EVALUATORS` and `modelbench list graders`).
"""

from __future__ import annotations

from pathlib import Path

from modelbench.graders.base import Evaluator
from modelbench.graders.registry import evaluator
from modelbench.specs import (
    LlamaGuardAPISpec,
    LlamaGuardLocalSpec,
    LLMJudgeSpec,
    MiniLMCESpec,
    MiniLMClfSpec,
    RefusalSpec,
)

# The judge `llm-judge` uses without '@SUT', and how long its verdicts may be.
DEFAULT_JUDGE = "smollm2-135m"
JUDGE_MAX_TOKENS = 24


@evaluator(
    kind="refusal",
    description="lexical refusal/compliance detector, hazard-aware for specialised advice",
)
def refusal(spec: RefusalSpec, sut_options=None, registry=None) -> Evaluator:
    from modelbench.graders.refusal import RefusalEvaluator

    return RefusalEvaluator()


@evaluator(
    kind="minilm-ce",
    description=(
        "all-MiniLM-L6-v2 fine-tuned as a (prompt, response) cross-encoder on answers of several chat "
        "models; ONNX Runtime int8 (minilm-ce@float32: torch float32)"
    ),
)
def minilm_ce(spec: MiniLMCESpec, sut_options=None, registry=None) -> Evaluator:
    from modelbench.graders.cross_encoder import DEFAULT_DTYPE, CrossEncoderClassifier

    return CrossEncoderClassifier(dtype=spec.dtype or DEFAULT_DTYPE)


@evaluator(
    kind="minilm-clf",
    description="all-MiniLM-L6-v2 embeddings of prompt and response into a logistic head trained on XSTest",
)
def minilm_clf(spec: MiniLMClfSpec, sut_options=None, registry=None) -> Evaluator:
    from modelbench.graders.minilm import MiniLMClassifier

    return MiniLMClassifier()


@evaluator(
    kind="llm-judge",
    description="any chat model as judge with a hazard rubric (llm-judge@SUT; default judge smollm2-135m)",
)
def llm_judge(spec: LLMJudgeSpec, sut_options=None, registry=None) -> Evaluator:
    from modelbench.graders.llm_judge import LLMJudge
    from modelbench.suts import SUTOptions, make_sut

    options = (sut_options or SUTOptions()).model_copy(update={"max_new_tokens": JUDGE_MAX_TOKENS})
    return LLMJudge(make_sut(spec.judge or DEFAULT_JUDGE, options, registry))


@evaluator(
    kind="llama-guard",
    description=(
        "Llama Guard 3: P(unsafe) from first-token probabilities; llama-guard@URL (asks the server "
        "which model it serves), llama-guard@MODEL@URL, or llama-guard@/local/path"
    ),
)
def llama_guard(spec: LlamaGuardAPISpec | LlamaGuardLocalSpec, sut_options=None, registry=None) -> Evaluator:
    # One kind, two backends: the spec's type (a server URL or a local path) picks the backend.
    if isinstance(spec, LlamaGuardAPISpec):
        from modelbench.graders.llama_guard import LlamaGuardAPI

        return LlamaGuardAPI(spec.url, spec.model) if spec.model else LlamaGuardAPI(spec.url)
    from modelbench.graders.llama_guard import LlamaGuardLocal
    from modelbench.suts import check_model_path

    path = Path(spec.path).expanduser()
    check_model_path(path)
    return LlamaGuardLocal(path, device=getattr(sut_options, "device", None))
