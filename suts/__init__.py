"""Systems under test: the protocol, adapters, and the registry of named SUTs."""

from modelbench.suts.base import SUT, SUTResponse
from modelbench.suts.options import SUTOptions
from modelbench.suts.registry import DEFAULT_SUT, load_registry, make_sut

__all__ = ["DEFAULT_SUT", "SUT", "SUTOptions", "SUTResponse", "load_registry", "make_sut"]
