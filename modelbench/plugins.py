"""Adapters and evaluators from other installed packages, found through an entry point.

A package that declares, in its pyproject.toml,

    [project.entry-points."modelbench.plugins"]
    my_plugin = "my_package.modelbench_plugin"

has that module imported the first time a spec names a kind or adapter that the built-ins do not
know (and when `modelbench list` lists them). The module registers what it brings the way the
built-ins do, with `@adapter` (`modelbench.suts.registry`) and `@evaluator`
(`modelbench.graders.registry`), the way Inspect finds providers in other packages.
"""

import importlib.metadata
import logging

from modelbench.errors import UserError

ENTRY_POINT_GROUP = "modelbench.plugins"
log = logging.getLogger("modelbench")
_loaded: dict[str, str] = {}


def load_plugins() -> dict[str, str]:
    """Import every plugin module not imported yet; name -> module. A plugin that fails to import
    is one clear line naming it, not a traceback."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _loaded:
            continue
        try:
            entry.load()
        except Exception as exc:  # a plugin's own error, whatever it is, is reported as the plugin's
            raise UserError(f"plugin '{entry.name}' ({entry.value}) failed to load: {exc}") from None
        _loaded[entry.name] = entry.value
        log.debug("loaded plugin %s from %s", entry.name, entry.value)
    return dict(_loaded)
