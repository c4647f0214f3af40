"""Evaluators by spec, and the default ensemble.

Specs: `minilm-ce` (the default; `minilm-ce@int8` quantises its linear layers), `refusal`,
`minilm-clf`, `llm-judge` (the embedded SmolLM2 as judge) or `llm-judge@SUT` (any SUT spec: a
registry name, hf:PATH, openai:MODEL, openai-compat:MODEL@URL), `llama-guard@http://host:port/v1`
(vLLM serving Llama Guard 3; the server is asked which model it serves, and
`llama-guard@MODEL@URL` names one when it serves several) or
`llama-guard@/path/to/Llama-Guard-3-1B` (local transformers). The grammar is `modelbench.specs`.

Evaluators register themselves: a factory `(spec, sut_options, registry) -> Evaluator` decorated
with `@evaluator(kind=..., description=...)` is recorded under its kind, and `make_evaluator` looks
the factory up by the parsed spec's `kind`. The built-in factories are in
`modelbench.graders.providers`, each importing its (heavy) evaluator module only when called, so
importing this module loads neither torch nor transformers. Adding an evaluator is one decorated
function there (plus its module and its grammar in `modelbench.specs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from modelbench.errors import UserError
from modelbench.graders.base import Evaluator
from modelbench.specs import GraderSpec, as_grader_spec

# (parsed spec, SUT options or None, SUT registry or None) -> evaluator
EvaluatorFactory = Callable[[Any, Any, Any], Evaluator]


@dataclass(frozen=True)
class EvaluatorEntry:
    """A registered evaluator kind: what `modelbench list graders` says of it and how to make one."""

    kind: str
    description: str
    factory: EvaluatorFactory


# Kind -> entry, in registration order (the built-ins register in modelbench.specs.GRADER_KINDS order).
_REGISTRY: dict[str, EvaluatorEntry] = {}


def evaluator(kind: str, description: str) -> Callable[[EvaluatorFactory], EvaluatorFactory]:
    """Register the decorated factory as the maker of evaluators for specs whose `kind` is `kind`."""

    def register(factory: EvaluatorFactory) -> EvaluatorFactory:
        if kind in _REGISTRY:
            raise ValueError(f"evaluator kind '{kind}' is already registered")
        _REGISTRY[kind] = EvaluatorEntry(kind, description, factory)
        return factory

    return register


def unregister_evaluator(kind: str) -> None:
    """Forget a registered kind (for tests and plugins that register temporarily)."""
    _REGISTRY.pop(kind, None)


def evaluator_entry(kind: str) -> EvaluatorEntry:
    entry = _REGISTRY.get(kind)
    if entry is None:
        raise UserError(f"no evaluator registered for grader kind '{kind}' (known: {', '.join(_REGISTRY)})")
    return entry


class _Descriptions(Mapping[str, str]):
    """Kind -> description, read live from the registry (what `EVALUATORS` has always been)."""

    def __getitem__(self, kind: str) -> str:
        return _REGISTRY[kind].description

    def __iter__(self) -> Iterator[str]:
        return iter(list(_REGISTRY))

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


# Keyed by modelbench.specs.GRADER_KINDS, in that order.
EVALUATORS: Mapping[str, str] = _Descriptions()
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
    return evaluator_entry(parsed.kind).factory(parsed, sut_options, registry)


# The built-in evaluators register on import; their heavy modules load only when one is made.
from modelbench.graders import providers as _providers  # noqa: E402, F401
