"""Evaluators by spec, and the default ensemble.

Specs: `minilm-ce` (the default, on ONNX Runtime int8; `minilm-ce@float32` is the torch reference,
`minilm-ce@int8` torch int8, `minilm-ce@onnx-float32`), `refusal`,
`minilm-clf`, `llm-judge` (the embedded SmolLM2 as judge) or `llm-judge@SUT` (any SUT spec: a
registry name, hf:PATH, openai:MODEL, openai-compat:MODEL@URL), `llama-guard@http://host:port/v1`
(vLLM serving Llama Guard 3; the server is asked which model it serves, and
`llama-guard@MODEL@URL` names one when it serves several) or
`llama-guard@/path/to/Llama-Guard-3-1B` (local transformers). The grammar is `modelbench.specs`.

Evaluators register themselves: a factory `(spec, sut_options, registry) -> Evaluator` decorated
with `@evaluator(kind=..., description=...)` is recorded under its kind in the registry
(`modelbench.graders.registry`), and `make_evaluator` looks the factory up by the parsed spec's
`kind`. The built-in
factories are in `modelbench.graders.providers`, each importing its (heavy) evaluator module only
when called, so importing this module loads neither torch nor transformers. A new evaluator is one
new file: its module with a decorated factory; a kind the grammar does not know reads as
`KIND[@TARGET]` (or by the parser given to the decorator). `tests/test_plugins.py` adds one from a
test file alone and runs it through the CLI.
"""

from __future__ import annotations

from modelbench.graders.base import Evaluator
from modelbench.graders.providers import DEFAULT_JUDGE, JUDGE_MAX_TOKENS  # noqa: F401 - registers the built-ins
from modelbench.graders.registry import evaluator_entry
from modelbench.specs import GraderSpec, as_grader_spec

# Chosen on leave-one-source-out rows (benchmarks/evaluator_loso_report.py, protocol v2): a
# logistic combination of `minilm-ce` and `refusal`, chosen without each source, scored mean LOSO
# F1 0.520 against 0.539 for `minilm-ce` alone, so `refusal` stays out of the default.
# `minilm-clf` was no candidate (it trained on XSTest rows that are calibration rows here), nor was
# llm-judge on the embedded SmolLM2-135M
# (reliability 0: its P(UNSAFE) ranks refusals above harmful compliances).
DEFAULT_GRADERS = ("minilm-ce",)


def make_evaluator(spec: str | GraderSpec, sut_options=None, registry=None) -> Evaluator:
    """An evaluator for a grader spec (text or parsed; the grammar is `modelbench.specs`)."""
    parsed = as_grader_spec(spec)
    return evaluator_entry(parsed.kind).factory(parsed, sut_options, registry)
