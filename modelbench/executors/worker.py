"""The worker side: one SUT and the run's evaluators, built once per worker and fed many units.

A worker (a Ray actor; nothing here imports Ray) is made from the same texts a run starts from:
the SUT spec, the run's SUTOptions, the SUT registry entries, the grader specs. It builds the SUT
and the evaluators on its first unit (a local model loads once per worker, a compressed SUT is
built once, or found in the node's compressed-checkpoint cache) and checks that their fingerprints
are the driver's, so that both sides compute the same store keys. Each unit then runs through the
engine itself (`modelbench.engine.Engine`, the local executor's code: length-sorted batches,
concurrency, retries, evaluator queues, failures recorded per item) over a `UnitStore`, and the
rows it wrote go back to the driver.
"""

import os
import socket
import time
from typing import Any

from modelbench.engine import Engine
from modelbench.errors import UserError
from modelbench.executors.units import Unit, UnitResult, UnitStore
from modelbench.graders import Evaluator, make_evaluator
from modelbench.hashing import canonical_json
from modelbench.scoring import EnsembleConfig
from modelbench.suts import SUT, SUTOptions, make_sut


def _short(value: Any) -> str:
    return canonical_json(value)[:80]


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class UnitWorker:
    """Runs units of one SUT. `fingerprints`: the driver's {"sut": ..., "graders": {uid: ...}}."""

    def __init__(
        self,
        sut_spec: str,
        options: SUTOptions,
        registry: dict[str, Any],
        grader_specs: list[str],
        ensemble: EnsembleConfig,
        fingerprints: dict[str, Any],
        preflight: bool = True,
    ):
        self.sut_spec = sut_spec
        self.preflight = preflight
        self.options = options
        self.registry = registry
        self.grader_specs = grader_specs
        self.ensemble = ensemble
        self.fingerprints = fingerprints
        self.sut: SUT | None = None
        self.evaluators: list[Evaluator] = []
        self.units_done = 0

    async def _build(self) -> str | None:
        """Make the SUT and evaluators; a reason they cannot serve this run, or None."""
        sut = make_sut(self.sut_spec, self.options, self.registry)
        evaluators = [make_evaluator(spec, self.options, self.registry) for spec in self.grader_specs]
        if self.preflight:  # as on the driver (--no-preflight skips both): an API grader learns its model
            for evaluator in evaluators:
                await evaluator.preflight()
        ours = {"sut": sut.fingerprint(), "graders": {e.uid: e.fingerprint() for e in evaluators}}
        theirs = self.fingerprints
        if canonical_json(ours) != canonical_json(theirs):
            parts = [("sut", ours["sut"], theirs.get("sut") or {})] + [
                (uid, fp, (theirs.get("graders") or {}).get(uid) or {}) for uid, fp in ours["graders"].items()
            ]
            differ = [
                f"{who}.{key}: {_short(here.get(key))} here, {_short(there.get(key))} on the driver"
                for who, here, there in parts
                for key in sorted(set(here) | set(there))
                if canonical_json(here.get(key)) != canonical_json(there.get(key))
            ]
            return (
                f"SUT {self.sut_spec} on worker {worker_name()} is not the driver's, so their store keys "
                f"would differ ({'; '.join(differ[:3])}): other weights, device or dtype on this node?"
            )
        self.sut, self.evaluators = sut, evaluators
        return None

    async def process(self, unit: Unit) -> UnitResult:
        started_at, started = time.time(), time.perf_counter()
        result = UnitResult(unit.index, unit.sut_uid, worker=worker_name(), started_at=started_at)
        if self.sut is None:
            try:
                result.problem = await self._build()
            except UserError as exc:
                result.problem = f"worker {worker_name()}: {exc}"
            result.built = True
            result.build_s = time.perf_counter() - started
            if result.problem:
                return result
        assert self.sut is not None
        store = UnitStore(unit.responses, unit.verdicts)
        engine = Engine(
            store,  # type: ignore[arg-type]
            [self.sut],
            self.evaluators,
            self.ensemble,
            f"unit-{unit.index}",
            context_items=unit.bases,
        )
        try:
            outcome = await engine.run(unit.items)
        except UserError as exc:
            result.problem = f"worker {worker_name()}: {exc}"
            return result
        result.responses = store.new_responses
        result.verdicts = store.new_verdicts
        stats = outcome.sut_stats[self.sut.uid]
        result.generation_s, result.completion_tokens = stats.generation_s, stats.completion_tokens
        result.wall_s = time.perf_counter() - started
        self.units_done += 1
        return result
