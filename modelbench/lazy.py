"""Names a package exports without importing their modules until first used (PEP 562).

A package's `__init__` is its public face: other packages import from it, never from its inner
modules (tests/test_architecture.py checks). Some names live in heavy modules (torch,
transformers, Jinja2 templates); listing them in a `_LAZY` table keeps importing the package cheap.
"""

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """The module `__getattr__` of `package`: `table` maps each lazily exported name to the module
    that defines it, imported on the name's first use."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(module), name)

    return __getattr__
