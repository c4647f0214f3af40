"""The evaluator registry: one table from a grader spec's kind to the factory that builds it.

`@evaluator(kind, description)` records a factory `(parsed spec, SUT options, SUT registry) ->
Evaluator` under its kind; `EVALUATORS` is that table (kind -> `EvaluatorEntry`: description and
factory). A leaf module (it imports no evaluator), so that the built-in factories in
`modelbench.graders.providers`, a plugin, or a test can register a kind without an import cycle;
`modelbench.graders.factory` imports the built-ins and makes evaluators from specs. Registering a
kind also teaches the spec grammar (`modelbench.specs`) to read `KIND[@TARGET]` for it, so a new
evaluator is one new file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from modelbench.errors import UserError
from modelbench.graders.base import Evaluator
from modelbench.specs import GraderParser, forget_grader_kind, register_grader_kind

# (parsed spec, SUT options or None, SUT registry or None) -> evaluator
EvaluatorFactory = Callable[[Any, Any, Any], Evaluator]


@dataclass(frozen=True)
class EvaluatorEntry:
    """A registered evaluator kind: what `modelbench list graders` says of it and how to make one."""

    kind: str
    description: str
    factory: EvaluatorFactory


_REGISTRY: dict[str, EvaluatorEntry] = {}


def evaluator(
    kind: str, description: str, parse: GraderParser | None = None
) -> Callable[[EvaluatorFactory], EvaluatorFactory]:
    """Register the decorated factory as the maker of evaluators for specs whose `kind` is `kind`.

    A kind the grammar does not know yet is added to it: `parse(text, target)` when given, else
    `KIND` / `KIND@TARGET` read as `PluginGraderSpec(kind, target)`.
    """

    def register(factory: EvaluatorFactory) -> EvaluatorFactory:
        if kind in _REGISTRY:
            raise ValueError(f"evaluator kind '{kind}' is already registered")
        register_grader_kind(kind, parse)
        _REGISTRY[kind] = EvaluatorEntry(kind, description, factory)
        return factory

    return register


def unregister_evaluator(kind: str) -> None:
    """Forget a registered kind (for tests and plugins that register temporarily)."""
    _REGISTRY.pop(kind, None)
    forget_grader_kind(kind)


def evaluator_entry(kind: str) -> EvaluatorEntry:
    entry = _REGISTRY.get(kind)
    if entry is None:
        raise UserError(f"no evaluator registered for grader kind '{kind}' (known: {', '.join(_REGISTRY)})")
    return entry


# Kind -> entry, in registration order (the built-ins register in modelbench.specs.GRADER_KINDS order);
# read-only outside this module: register with `@evaluator`, forget with `unregister_evaluator`.
EVALUATORS: Mapping[str, EvaluatorEntry] = MappingProxyType(_REGISTRY)
