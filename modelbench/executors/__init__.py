"""Executors: where a run's answers and verdicts are made.

The default is the engine in this process (`modelbench.engine`, asyncio, one SQLite store).
`--executor ray` fills the store from a Ray cluster's workers first (`RayExecutor.fill`): units of
(SUT, length-sorted items), one actor per SUT per worker slot, the driver the only writer; the
local engine then finds everything stored and only scores, so scores, records and reports have one
code path. Ray is imported when a run asks for it, never by a default run.
"""

from modelbench.executors.fill import FillResult
from modelbench.executors.ray_executor import RayExecutor
from modelbench.executors.units import DEFAULT_UNIT_SIZE, Plan, Unit, UnitResult, UnitStore, plan_units
from modelbench.executors.worker import UnitWorker

__all__ = [
    "DEFAULT_UNIT_SIZE",
    "FillResult",
    "Plan",
    "RayExecutor",
    "Unit",
    "UnitResult",
    "UnitStore",
    "UnitWorker",
    "plan_units",
]
