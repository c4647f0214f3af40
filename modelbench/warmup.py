"""Imports that only the end of a run needs, made while the run waits on the network.

A run's first work is waiting: the preflight's round trip, then the SUT's answers. Its last work
is scoring, and Clopper-Pearson intervals need `scipy.special`, a tenth of a second to import on
these machines, paid after the last answer when nothing else is left to overlap with. One daemon
thread imports such modules as soon as the engine starts, on the time the main thread spends
waiting in the event loop. A failure here is ignored: the real import later reports it where it
belongs.
"""

import importlib
import logging
import threading

# Modules the scoring and the report import lazily, slowest first.
LATER = ("scipy.special",)

log = logging.getLogger("modelbench")


def _import_later() -> None:
    for name in LATER:
        try:
            importlib.import_module(name)
        except Exception as exc:  # reported by the import that needs it
            log.debug("warm-up could not import %s: %r", name, exc)


def warm_up() -> threading.Thread:
    thread = threading.Thread(target=_import_later, name="modelbench-warm-up", daemon=True)
    thread.start()
    return thread
