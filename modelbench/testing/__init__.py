"""Test doubles that are real servers and real SUTs: shipped, so that tests, benchmarks and users'
dry runs (`python -m modelbench.testing.mock_server`) stand up the same peer, and so that Ray
workers can build the test SUTs by name (`modelbench.testing.suts`, named by a registry entry's
`module:`). No default run imports this package."""

from modelbench.lazy import lazy_exports

_LAZY = {
    "MockServer": "modelbench.testing.mock_server",
    "ServerState": "modelbench.testing.mock_server",
}

__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = ["MockServer", "ServerState"]
