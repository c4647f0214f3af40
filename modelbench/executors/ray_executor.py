"""`--executor ray`: answer and judge on a Ray cluster's workers; the driver alone writes the store.

The driver plans units (`modelbench.executors.units`), then keeps a pool of Ray actors busy: one
actor per SUT per worker slot (a GPU for a local model on a cluster with GPUs, a CPU otherwise),
each fed unit after unit, so a model loads once per worker and never once per unit. A SUT gets
`workers` actors (default: the slots shared among the SUTs with work), and SUTs that do not fit
at once wait for a slot: when a SUT's units are done its actors are released. Every finished unit
is written to the store at once, so a dead worker, a dead driver or a Ctrl-C loses only units in
flight. An actor that dies (a killed process, a lost node) is restarted by Ray and its units are
retried (`max_restarts`, `max_task_retries`); past that the run stops with one line, and what was
written stays.

Ray is imported only here, and only when a run asks for it.
"""

import logging
import os
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from modelbench.engine import NullProgress, ProgressSink
from modelbench.errors import UserError
from modelbench.executors.fill import FillResult, SUTFill
from modelbench.executors.units import DEFAULT_UNIT_SIZE, Unit, UnitResult, plan_units
from modelbench.executors.worker import UnitWorker
from modelbench.reports import RayExecution
from modelbench.run_plan import PreparedRun, RunRequest
from modelbench.store import Store
from modelbench.suts import SUT, load_registry

log = logging.getLogger("modelbench")
IN_FLIGHT_PER_ACTOR = 2  # one running, one queued behind it: no idle gap between units
WAIT_S = 0.5  # the longest the driver blocks on Ray at a time (Ctrl-C is seen between waits)
RESOURCE_KEYS = ("CPU", "GPU", "memory", "object_store_memory")


@dataclass
class _Actor:
    sut_uid: str
    kind: str  # "GPU" or "CPU": the slot it holds
    handle: Any
    in_flight: dict[Any, Unit] = field(default_factory=dict)
    # Until Ray has placed the actor (its built-in `__ray_ready__` answers), the run watches the
    # clock: a worker no node can host would otherwise wait forever.
    asks: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    ready_ref: Any = None
    placed: bool = False


PROBE_TIMEOUT_S = 5.0
DEFAULT_PLACEMENT_TIMEOUT_S = 300.0


def probe_address(address: str) -> None:
    """A HOST:PORT (or ray://HOST:PORT) where nothing listens is one line in seconds: Ray itself
    retries such an address for minutes, printing warnings. `auto` is left to Ray."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    import socket

    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        why = "connection refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc))
        raise UserError(f"cannot reach Ray at {address}: nothing answers on {host}:{port} ({why})") from None


class RayExecutor:
    """`address`: None (reuse a Ray already started in this process, else RAY_ADDRESS, else a new
    local cluster on 127.0.0.1), "auto", "HOST:PORT" or "ray://HOST:PORT"."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        unit_size: int = DEFAULT_UNIT_SIZE,
        max_restarts: int = 3,
        placement_timeout_s: float = DEFAULT_PLACEMENT_TIMEOUT_S,
    ):
        if placement_timeout_s <= 0:
            raise UserError(f"--placement-timeout must be positive, got {placement_timeout_s:g}")
        if workers is not None and workers < 1:
            raise UserError(f"--workers must be at least 1, got {workers}")
        if unit_size < 1:
            raise UserError(f"--unit-size must be at least 1, got {unit_size}")
        self.address = address
        self.workers = workers
        self.unit_size = unit_size
        self.max_restarts = max_restarts
        self.placement_timeout_s = placement_timeout_s
        self.started_here = False
        self.resources: dict[str, float] = {}
        self._ray: Any = None
        self._run_id: str | None = None
        self._graders: list[str] = []

    @property
    def resume_flags(self) -> str:
        """What `--resume` needs to go on the same way."""
        flags = " --executor ray" + (f" --ray-address {self.address}" if self.address else "")
        flags += f" --workers {self.workers}" if self.workers else ""
        return flags + (f" --unit-size {self.unit_size}" if self.unit_size != DEFAULT_UNIT_SIZE else "")

    # -- the cluster -----------------------------------------------------------------------------
    def connect(self) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports leave the machine
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'modelbench[ray]'") from None
        self._ray = ray
        # Ray's note that it will stop hiding GPUs from workers that ask for none: we ask for them
        # where we use them.
        warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
        if not ray.is_initialized():
            quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
            try:
                if self.address or os.environ.get("RAY_ADDRESS"):
                    probe_address(self.address or os.environ.get("RAY_ADDRESS", ""))
                    ray.init(address=self.address, **quiet)
                else:  # a cluster of this machine alone, reachable from this machine alone
                    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
                raise UserError(f"cannot reach Ray at {where}: {str(exc).splitlines()[0]}") from None
            self.started_here = True
        self.resources = {k: v for k, v in ray.cluster_resources().items() if k in RESOURCE_KEYS}

    def close(self) -> None:
        if self.started_here and self._ray is not None:
            self._ray.shutdown()
            self.started_here = False

    def gpus(self) -> int:
        return int(self.resources.get("GPU", 0))

    def adjust(self, request: RunRequest) -> RunRequest:
        """On a cluster with GPUs, local models run on `cuda` unless --device says otherwise; the
        driver's SUTs must say so too, since the device decides the dtype and so the store keys."""
        if self.gpus() and request.sut_options.device is None:
            options = request.sut_options.model_copy(update={"device": "cuda"})
            return request.model_copy(update={"sut_options": options})
        return request

    def _kind(self, sut: SUT, evaluators: list[Any]) -> str:
        """A GPU slot for a worker whose SUT or any grader loads a model onto the device (a local
        model, a local judge or Llama Guard); a CPU slot for an API SUT judged on CPUs."""
        uses_device = sut.can("accelerator") or any(getattr(e, "device_bound", False) for e in evaluators)
        return "GPU" if uses_device and self.gpus() else "CPU"

    def _cpus_per_gpu(self) -> int:
        """CPUs a GPU worker asks for beside its GPU (its grader runs on them; Ray passes the count
        on as OMP_NUM_THREADS): the smallest share any GPU node can give every one of its GPUs,
        leaving a core for workers of API SUTs. Counted per node, since a worker is placed on one
        node: a CPU-rich head node must not make a request no GPU node can meet."""
        shares = []
        for node in self._ray.nodes():
            resources = node.get("Resources") or {}
            if node.get("Alive") and resources.get("GPU"):
                shares.append(int(max(1.0, resources.get("CPU", 1.0) - 1) // resources["GPU"]))
        return max(1, min(shares)) if shares else 1

    # -- the run ---------------------------------------------------------------------------------
    def fill(self, prepared: PreparedRun, store: Store, progress: ProgressSink | None = None) -> FillResult:
        """Answer and judge everything the store lacks for this run; return what was made."""
        progress = progress or NullProgress()
        suts, evaluators, items = prepared.suts, prepared.evaluators, prepared.items
        self._run_id, self._graders = prepared.run_id, [e.uid for e in evaluators]
        store.put_items(items)
        plan = plan_units(store, suts, evaluators, items, self.unit_size)
        for sut in suts:
            progress.start(f"respond {sut.uid}", len(items), plan.responses_stored[sut.uid])
        for e in evaluators:
            progress.start(f"grade {e.uid}", len(items) * len(suts), plan.verdicts_stored.get(e.uid, 0))
        kinds = {sut.uid: self._kind(sut, evaluators) for sut in suts}
        capacity = {kind: max(1, int(self.resources.get(kind, 1))) for kind in set(kinds.values())}
        with_work = {u.sut_uid for u in plan.units}
        sharing = {kind: sum(1 for uid in with_work if kinds[uid] == kind) for kind in capacity}
        per_sut = {
            uid: self.workers or max(1, capacity[kinds[uid]] // sharing[kinds[uid]]) for uid in with_work
        }
        result = FillResult(
            executor=RayExecution(
                ray_version=getattr(self._ray, "__version__", None),
                address=self.address or os.environ.get("RAY_ADDRESS") or "local",
                started_cluster=self.started_here,
                cluster_resources=self.resources,
                nodes=sum(1 for n in self._ray.nodes() if n.get("Alive")),
                unit_size=self.unit_size,
                units_planned=len(plan.units),
                workers_per_sut={uid: per_sut[uid] for uid in sorted(with_work)},
                slot_per_worker={uid: kinds[uid] for uid in sorted(with_work)},
                max_restarts=self.max_restarts,
                started_at_unix=time.time(),
            ),
            suts={sut.uid: SUTFill() for sut in suts},
        )
        if plan.units:
            self._run_units(prepared, plan.units, kinds, capacity, per_sut, store, progress, result)
        result.ended = time.perf_counter()
        return result

    def _run_units(
        self,
        prepared: PreparedRun,
        units: list[Unit],
        kinds: dict[str, str],
        capacity: dict[str, int],
        per_sut: dict[str, int],
        store: Store,
        progress: ProgressSink,
        result: FillResult,
    ) -> None:
        ray = self._ray
        queues: dict[str, deque[Unit]] = {}
        for unit in units:
            queues.setdefault(unit.sut_uid, deque()).append(unit)
        suts = {sut.uid: sut for sut in prepared.suts}
        make = self._actor_maker(prepared)
        actors: list[_Actor] = []
        created = 0
        try:
            while any(queues.values()) or any(a.in_flight for a in actors):
                # Start actors where slots are free, SUT by SUT in the run's order.
                for uid, queue in queues.items():
                    mine = [a for a in actors if a.sut_uid == uid]
                    kind = kinds[uid]
                    while (
                        queue
                        and len(mine) < min(per_sut[uid], len(queue) + sum(len(a.in_flight) for a in mine))
                        and sum(1 for a in actors if a.kind == kind) < capacity[kind]
                    ):
                        asks = self._resources_for(kind)
                        actor = _Actor(uid, kind, make(suts[uid], asks), asks=asks)
                        actor.ready_ref = actor.handle.__ray_ready__.remote()
                        actors.append(actor)
                        mine.append(actor)
                        created += 1
                # Feed every actor; a unit waits in the actor's queue behind the one it runs.
                for actor in actors:
                    queue = queues[actor.sut_uid]
                    while queue and len(actor.in_flight) < IN_FLIGHT_PER_ACTOR:
                        unit = queue.popleft()
                        result.dispatched(unit.sut_uid)
                        actor.in_flight[actor.handle.process.remote(unit)] = unit
                self._check_placement(actors)
                refs = [ref for a in actors for ref in a.in_flight]
                if not refs:
                    continue
                ready, _ = ray.wait(refs, num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    actor = next(a for a in actors if ref in a.in_flight)
                    unit = actor.in_flight.pop(ref)
                    self._store_unit(self._get(ref, unit), unit, store, progress, result)
                # A SUT whose units are all done gives its slots back.
                for actor in [a for a in actors if not a.in_flight and not queues[a.sut_uid]]:
                    ray.kill(actor.handle, no_restart=True)
                    actors.remove(actor)
        finally:
            # Interrupted or failed: units in flight are dropped; the store keeps what finished.
            for actor in actors:
                ray.kill(actor.handle, no_restart=True)
            result.executor.actors = created

    def _actor_maker(self, prepared: PreparedRun):
        ray = self._ray
        request = prepared.request
        registry = load_registry(request.sut_config)
        graders = list(dict.fromkeys(request.graders))
        graders_fp = {e.uid: e.fingerprint() for e in prepared.evaluators}
        remote = ray.remote(UnitWorker)

        def make(sut: SUT, resources: dict[str, Any]) -> Any:
            return remote.options(
                **resources,
                max_restarts=self.max_restarts,
                max_task_retries=self.max_restarts,
                max_concurrency=1,
            ).remote(
                sut.uid,
                request.sut_options,
                registry,
                graders,
                prepared.ensemble,
                {"sut": sut.fingerprint(), "graders": graders_fp},
                request.preflight,
            )

        return make

    def _resources_for(self, kind: str) -> dict[str, Any]:
        """What one worker asks Ray for: a GPU and its share of the node's CPUs, or one CPU."""
        return {"num_cpus": self._cpus_per_gpu(), "num_gpus": 1} if kind == "GPU" else {"num_cpus": 1}

    def _check_placement(self, actors: list[_Actor]) -> None:
        """One line, not an endless wait, when Ray has not placed a worker within the timeout."""
        ray = self._ray
        for actor in actors:
            if actor.placed:
                continue
            done, _ = ray.wait([actor.ready_ref], num_returns=1, timeout=0)
            if done:
                actor.placed = True
            elif time.monotonic() - actor.created > self.placement_timeout_s:
                have = (
                    ", ".join(f"{k} {v:g}" for k, v in self.resources.items() if k in ("CPU", "GPU"))
                    or "nothing"
                )
                raise UserError(
                    f"Ray could not place a worker for {actor.sut_uid} within {self.placement_timeout_s:g}s: "
                    f"it asks for {actor.asks}, and the cluster has {have} (busy, or no node has what "
                    "it asks); "
                    "free or add resources, or raise --placement-timeout"
                )

    def _get(self, ref: Any, unit: Unit) -> UnitResult:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise UserError(
                f"the worker for {unit.sut_uid} died {self.max_restarts + 1} times (last: "
                f"{str(exc).splitlines()[0][:200]}); finished units are stored, run again to go on"
            ) from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise UserError(f"a unit of {unit.sut_uid} failed on its worker: {cause!r}"[:500]) from None

    def _store_unit(
        self, unit_result: UnitResult, unit: Unit, store: Store, progress: ProgressSink, result: FillResult
    ) -> None:
        if unit_result.problem:
            raise UserError(unit_result.problem)
        store.put_responses(unit_result.responses, run_id=self._run_id, commit=False)
        store.put_verdicts(unit_result.verdicts, commit=False)
        store.commit()
        counts = result.add(unit_result, len(unit.items))
        progress.advance(f"respond {unit.sut_uid}", counts.answered, failed=counts.failed)
        for uid, n in counts.verdicts.items():
            progress.advance(f"grade {uid}", n, failed=counts.invalid.get(uid, 0))
        if counts.failed:  # nothing to grade: not the evaluators' failure
            for uid in self._graders:
                progress.advance(f"grade {uid}", counts.failed, skipped=True)
