"""Evaluators by spec, and the default ensemble.

Specs: `minilm-ce` (the default; `minilm-ce@int8` quantises its linear layers), `refusal`,
`minilm-clf`, `llm-judge` (the embedded SmolLM2 as judge) or `llm-judge@SUT` (any SUT spec: a
registry name, hf:PATH, openai:MODEL, openai-compat:MODEL@URL), `llama-guard@http://host:port/v1`
(vLLM serving Llama Guard 3; the server is asked which model it serves, and
`llama-guard@MODEL@URL` names one when it serves several) or
`llama-guard@/path/to/Llama-Guard-3-1B` (local transformers). The grammar is `modelbench.specs`.
"""

from pathlib import Path

from modelbench.graders.base import Evaluator
from modelbench.specs import (
    GraderSpec,
    LlamaGuardAPISpec,
    LLMJudgeSpec,
    MiniLMCESpec,
    MiniLMClfSpec,
    RefusalSpec,
    as_grader_spec,
)

# Keyed by modelbench.specs.GRADER_KINDS, in that order.
EVALUATORS: dict[str, str] = {
    "refusal": "lexical refusal/compliance detector, hazard-aware for specialised advice",
    "minilm-ce": (
        "all-MiniLM-L6-v2 fine-tuned as a (prompt, response) cross-encoder on answers of several chat models"
    ),
    "minilm-clf": "all-MiniLM-L6-v2 embeddings of prompt and response into a logistic head trained on XSTest",
    "llm-judge": "any chat model as judge with a hazard rubric (llm-judge@SUT; default judge smollm2-135m)",
    "llama-guard": (
        "Llama Guard 3: P(unsafe) from first-token probabilities; llama-guard@URL (asks the server "
        "which model it serves), llama-guard@MODEL@URL, or llama-guard@/local/path"
    ),
}
# Chosen on calibration rows (benchmarks/evaluator_sources.py, benchmarks/evaluator_protocol.md):
# adding `refusal` to `minilm-ce` did not beat `minilm-ce` alone beyond noise (calibration mean
# per-source F1 0.560 vs 0.564), so it left the default. `minilm-clf` was no candidate (it trained
# on XSTest rows that are calibration rows here), nor was llm-judge on the embedded SmolLM2-135M
# (reliability 0: its P(UNSAFE) ranks refusals above harmful compliances).
DEFAULT_GRADERS = ("minilm-ce",)
DEFAULT_JUDGE = "smollm2-135m"
JUDGE_MAX_TOKENS = 24


def make_evaluator(spec: str | GraderSpec, sut_options=None, registry=None) -> Evaluator:
    """An evaluator for a grader spec (text or parsed; the grammar is `modelbench.specs`)."""
    parsed = as_grader_spec(spec)
    if isinstance(parsed, RefusalSpec):
        from modelbench.graders.refusal import RefusalEvaluator

        return RefusalEvaluator()
    if isinstance(parsed, MiniLMCESpec):
        from modelbench.graders.cross_encoder import CrossEncoderClassifier

        return CrossEncoderClassifier(dtype=parsed.dtype or "float32")
    if isinstance(parsed, MiniLMClfSpec):
        from modelbench.graders.minilm import MiniLMClassifier

        return MiniLMClassifier()
    if isinstance(parsed, LLMJudgeSpec):
        from modelbench.graders.llm_judge import LLMJudge
        from modelbench.suts import SUTOptions, make_sut

        options = (sut_options or SUTOptions()).model_copy(update={"max_new_tokens": JUDGE_MAX_TOKENS})
        return LLMJudge(make_sut(parsed.judge or DEFAULT_JUDGE, options, registry))
    if isinstance(parsed, LlamaGuardAPISpec):
        from modelbench.graders.llama_guard import LlamaGuardAPI

        return LlamaGuardAPI(parsed.url, parsed.model) if parsed.model else LlamaGuardAPI(parsed.url)
    from modelbench.graders.llama_guard import LlamaGuardLocal
    from modelbench.suts.hf_loading import check_model_path

    path = Path(parsed.path).expanduser()
    check_model_path(path)
    return LlamaGuardLocal(path, device=getattr(sut_options, "device", None))
