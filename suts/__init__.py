"""Systems under test: the protocol, adapters, and the registry of named SUTs.

The protocol, the options and the registry are imported with the package; the adapters load on
first use of their names.
"""

from modelbench.core import SUTResponse
from modelbench.lazy import lazy_exports
from modelbench.suts.base import SUT, Capability
from modelbench.suts.entries import SUTEntry, Weights, builtin_registry, load_registry
from modelbench.suts.options import Endpoint, SUTOptions
from modelbench.suts.registry import ADAPTERS, DEFAULT_SUT, adapter, make_sut

_LAZY = {
    "GRADABLE_OUTCOMES": "modelbench.suts.base",
    "LOADING_LOCK": "modelbench.suts.hf_loading",
    "PREFLIGHT_HEADER": "modelbench.suts.openai_compat",
    "check_model_path": "modelbench.suts.hf_loading",
    "embedded_file": "modelbench.suts.embedded",
    "load_causal_lm": "modelbench.suts.hf_loading",
    "model_identity": "modelbench.suts.hf_loading",
    "native_bf16_cpu": "modelbench.suts.hf_loading",
    "CompressedSUT": "modelbench.suts.compressed",
    "HuggingFaceSUT": "modelbench.suts.huggingface",
    "OpenAICompatSUT": "modelbench.suts.openai_compat",
    # Retrying failed requests; compressing a local model.
    "RetryPolicy": "modelbench.suts.retry",
    "parse_retry_after": "modelbench.suts.retry",
    "TRANSFORMS": "modelbench.suts.compress",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ADAPTERS",
    "SUTEntry",
    "Weights",
    "builtin_registry",
    "Capability",
    "CompressedSUT",
    "DEFAULT_SUT",
    "Endpoint",
    "GRADABLE_OUTCOMES",
    "HuggingFaceSUT",
    "LOADING_LOCK",
    "OpenAICompatSUT",
    "PREFLIGHT_HEADER",
    "RetryPolicy",
    "SUT",
    "SUTOptions",
    "SUTResponse",
    "TRANSFORMS",
    "adapter",
    "check_model_path",
    "embedded_file",
    "load_causal_lm",
    "load_registry",
    "make_sut",
    "model_identity",
    "native_bf16_cpu",
    "parse_retry_after",
]
