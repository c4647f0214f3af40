"""Systems under test: the protocol, adapters, and the registry of named SUTs.

The protocol, the options and the registry are imported with the package; the adapters load on
first use of their names.
"""

from importlib import import_module
from typing import Any

from modelbench.suts.base import SUT, Capability, SUTResponse
from modelbench.suts.options import Endpoint, SUTOptions
from modelbench.suts.registry import DEFAULT_SUT, adapter, load_registry, make_sut

_LAZY = {
    "CompressedSUT": "modelbench.suts.compressed",
    "HuggingFaceSUT": "modelbench.suts.huggingface",
    "OpenAICompatSUT": "modelbench.suts.openai_compat",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)


__all__ = [
    "DEFAULT_SUT",
    "SUT",
    "Capability",
    "CompressedSUT",
    "Endpoint",
    "HuggingFaceSUT",
    "OpenAICompatSUT",
    "SUTOptions",
    "SUTResponse",
    "adapter",
    "load_registry",
    "make_sut",
]
