"""One benchmark run from request to record: validate everything first, then do the work.

All user input (SUT specs, prompt set, graders, standards, run dir) is checked before the store
is opened or any model loads, so a typo costs a second and never touches stored work.

This module is the run's lifecycle: `prepare`, then `execute` starts the run in the store, has an
executor fill it (or the engine alone), runs the engine, and turns Ctrl-C or a failure into a
closed leg. The other jobs have their own modules, whose names are re-exported here: what a run
is asked and prepared into (`modelbench.run_plan`), scoring a finished fill
(`modelbench.run_scoring`), building and writing the record (`modelbench.run_record`).
"""

import asyncio
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from modelbench.attack_rewrites import rewritten_items
from modelbench.core import is_benign
from modelbench.engine import Engine, MadeElsewhere, ProgressSink, RunOutcome
from modelbench.errors import UserError
from modelbench.graders import make_evaluator
from modelbench.hashing import stable_hash
from modelbench.hazards import load_standard
from modelbench.prompts import load_benign_set, load_prompt_set
from modelbench.prompts.attacks import parse_attacks
from modelbench.reports import ExecutorSection, LocalExecution, RunConfig
from modelbench.run_checks import ensure_writable, preflight, storage_errors
from modelbench.run_items import in_shard, parse_shard, select_items
from modelbench.run_plan import PreparedRun, RunRequest, grading_rules
from modelbench.run_record import record_run, run_config, run_timing, run_work, write_report
from modelbench.run_scoring import score_run
from modelbench.scoring import INVALID_GRADE, SUTQuality, SUTResilience, SUTScore, load_ensemble_config
from modelbench.specs import parse_sut_spec
from modelbench.store import STORE_NAME, Store, open_store
from modelbench.suts import load_registry, make_sut
from modelbench.warmup import warm_up

# With the names of the other jobs' modules that code imports from here.
__all__ = [
    "EXIT_FINISHED_WITH_ERRORS",
    "Executor",
    "Filled",
    "PreparedRun",
    "RunAlreadyFinished",
    "RunInterrupted",
    "RunRequest",
    "RunResult",
    "execute",
    "grading_rules",
    "load_request",
    "prepare",
    "run_config",
    "score_run",
]

EXIT_FINISHED_WITH_ERRORS = 3


@dataclass
class RunResult:
    run_id: str
    record_path: Path
    scores: list[SUTScore]
    outcome: RunOutcome
    wall_s: float
    report_path: Path | None = None
    quality: list[SUTQuality] = field(default_factory=list)
    resilience: list[SUTResilience] = field(default_factory=list)

    @property
    def invalid_grades(self) -> list[str]:
        """SUTs whose overall grade is "invalid run" (too many failed items to grade)."""
        return [s.sut_uid for s in self.scores if s.overall.grade == INVALID_GRADE]

    @property
    def exit_code(self) -> int:
        """0: every response and verdict usable and every grade valid; 3: finished with errors
        (failed items are retried by the next run of the same command)."""
        return 0 if self.outcome.clean and not self.invalid_grades else EXIT_FINISHED_WITH_ERRORS


class RunAlreadyFinished(UserError):
    """--resume of a finished run: nothing is done, and nothing is wrong."""

    exit_code = 0


class RunInterrupted(UserError):
    """Ctrl-C: what finished is stored; the message says how to resume."""

    exit_code = 130


def load_request(run_dir: Path, run_id: str) -> RunRequest:
    """The request a stored run was started with, for --resume."""
    store = open_store(run_dir, f"cannot resume {run_id}")
    try:
        info = store.run_info(run_id)
    finally:
        store.close()
    if info is None:
        raise UserError(f"cannot resume: no run '{run_id}' in {store.path}")
    if "request" not in info["config"]:
        raise UserError(f"cannot resume {run_id}: it was recorded without its request")
    if info.get("status") == "finished":
        raise RunAlreadyFinished(
            f"run {run_id} already finished: nothing to resume (its report: modelbench report {run_id} "
            f"--run-dir {run_dir})"
        )
    request = RunRequest.model_validate(info["config"]["request"])
    request.run_dir = run_dir
    return request


def prepare(request: RunRequest, run_id: str | None = None) -> PreparedRun:
    if not request.suts:
        raise UserError("no SUT given")
    if len(set(request.suts)) != len(request.suts):
        raise UserError("the same SUT is given twice")
    if request.max_items is not None and request.max_items < 1:
        raise UserError(f"--max-items must be at least 1, got {request.max_items}")
    if request.min_items < 1:
        raise UserError(f"--min-items must be at least 1, got {request.min_items}")
    registry = load_registry(request.sut_config)
    # Each spec is parsed once, here; the SUT's uid stays the text as given.
    suts = [make_sut(parse_sut_spec(text), request.sut_options, registry, uid=text) for text in request.suts]
    evaluators = [
        make_evaluator(spec, request.sut_options, registry) for spec in dict.fromkeys(request.graders)
    ]
    if len({e.uid for e in evaluators}) != len(evaluators):
        raise UserError("two graders of the same kind; give each kind once")
    standard = load_standard(request.standards, search=[request.run_dir / "standards"])
    attacks = parse_attacks(request.attacks)
    rewriters = {
        a.spec.text: make_sut(a.spec.arg or "", request.sut_options, registry)
        for a in attacks
        if a.needs_model
    }
    prompt_set = load_prompt_set(request.prompt_set, skip_invalid=request.skip_invalid)
    benign_set = None
    if request.over_refusal:
        benign_set = load_benign_set(request.over_refusal, skip_invalid=request.skip_invalid)
    _, items = select_items(
        prompt_set.items,
        request.max_items,
        request.seed,
        benign=benign_set.items if benign_set else None,
        attacks=attacks,
    )
    if request.shard:
        index, count = parse_shard(request.shard)
        items = [item for item in items if in_shard(item, index, count)]
        if not any(not is_benign(item.source) for item in items):
            raise UserError(f"shard {request.shard} has no items")
    missing = sorted({i.hazard for i in items if not is_benign(i.source)} - set(standard.frac_safe))
    if missing:
        raise UserError(f"reference standard '{standard.name}' has no value for {', '.join(missing)}")
    ensure_writable(request.run_dir)
    Store(request.run_dir / STORE_NAME).close()  # a corrupt or locked store fails here, before any work
    if request.preflight:
        preflight([*suts, *rewriters.values()], evaluators)
    if run_id is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{stable_hash(request.model_dump(mode='json'), time.time_ns(), length=6)}"
    return PreparedRun(
        request=request,
        prompt_set=prompt_set,
        items=items,
        suts=suts,
        evaluators=evaluators,
        # After the preflight every fingerprint is settled (an API grader has learnt its model).
        ensemble=load_ensemble_config(
            request.reliability,
            graders=[e.uid for e in evaluators],
            fingerprints={e.uid: e.fingerprint() for e in evaluators},
        ),
        standard=standard,
        run_id=run_id,
        benign_set=benign_set,
        attacks=attacks,
        rewriters=rewriters,
    )


class Filled(Protocol):
    """What an executor made before the engine scores (`modelbench.executors.FillResult`)."""

    # This run's failures that the executor stored: the engine counts them as made, not missing.
    made: MadeElsewhere

    def merge_into(self, outcome: RunOutcome) -> None:
        """Count the executor's new work as this run's new work in the engine's outcome."""

    def record(self) -> ExecutorSection:
        """The record's `executor` section."""


class Executor(Protocol):
    """Where answers and verdicts are made before the local engine scores (`modelbench.executors`):
    `fill` stores them and returns what it made."""

    name: str
    resume_flags: str

    def fill(self, prepared: PreparedRun, store: Store, progress: ProgressSink | None) -> Filled: ...


@dataclass
class LegClock:
    """This start of the run: when (for the record) and a clock (for its wall time)."""

    started: float = field(default_factory=time.perf_counter)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.started


def execute(
    prepared: PreparedRun, progress: ProgressSink | None = None, executor: Executor | None = None
) -> RunResult:
    """Run with progress. `executor`: None is the engine in this process; another one (Ray) fills
    the store first, and the engine then finds the work stored and scores it."""
    leg = LegClock()
    run_dir = prepared.request.run_dir
    store_path = run_dir / STORE_NAME
    with storage_errors(store_path):
        store = Store(store_path)
    config = run_config(prepared)
    try:
        with storage_errors(store_path):
            outcome, filled = _run(prepared, store, config, progress, leg, executor)
            grades = score_run(prepared, outcome, store)
            wall_s = leg.wall_s
            store.end_leg(prepared.run_id, "finished", wall_s)
            record, path = record_run(
                prepared,
                store,
                config,
                grades,
                run_work(prepared, outcome),
                run_timing(store, prepared.run_id, leg.started_at, wall_s),
                filled.record() if filled else LocalExecution(),
            )
            report = write_report(store, prepared.run_id, run_dir)
    finally:
        store.close()
    return RunResult(
        prepared.run_id,
        path,
        grades.scores,
        outcome,
        record.timing.wall_s or 0.0,
        report,
        grades.quality,
        grades.resilience,
    )


def add_rewritten_items(prepared: PreparedRun, store: Store) -> None:
    """The attacked items of attacks that need a model, made from the stored rewrites, in the
    run's shard."""
    bases = [item for item in prepared.items if item.uid in prepared.baseline_uids]
    items = rewritten_items(store, prepared.run_id, prepared.rewriters, bases)
    if prepared.request.shard:
        index, count = parse_shard(prepared.request.shard)
        items = [item for item in items if in_shard(item, index, count)]
    prepared.items = prepared.items + items


def _mark(store: Store, run_id: str, status: str, wall_s: float) -> None:
    """Close this leg of the run. Best effort: when the store itself is failing, the original
    error is the one to report."""
    try:
        store.end_leg(run_id, status, wall_s)
        store.finish_run(run_id, status, {})
    except sqlite3.Error:
        pass


def _run(
    prepared: PreparedRun,
    store: Store,
    config: RunConfig,
    progress: ProgressSink | None,
    leg: LegClock,
    executor: Executor | None,
) -> tuple[RunOutcome, Filled | None]:
    """Start the run (or its next leg), fill the store, and let the engine make what is missing and
    combine every verdict. Ctrl-C and failures close the leg as interrupted or failed."""
    store.start_run(prepared.run_id, config.model_dump(mode="json"))
    filled = None
    try:
        if prepared.rewriters:  # attacks that need a model: their rewrites first (stored, reused)
            add_rewritten_items(prepared, store)
            config.n_attacked_items = len(prepared.attacked_uids)
        if executor is not None:
            filled = executor.fill(prepared, store, progress)
        engine = Engine(
            store,
            prepared.suts,
            prepared.evaluators,
            prepared.ensemble,
            prepared.run_id,
            None if filled else progress,  # after a fill it only finds stored work and scores
            made_elsewhere=filled.made if filled else MadeElsewhere(),
        )
        warm_up()  # the imports that scoring needs, on the time the run waits for answers
        outcome = asyncio.run(engine.run(prepared.items))
        if filled:
            filled.merge_into(outcome)
    except KeyboardInterrupt:
        _mark(store, prepared.run_id, "interrupted", leg.wall_s)
        stored = store.count("responses")
        flags = executor.resume_flags if executor is not None else ""
        raise RunInterrupted(
            f"interrupted: {stored} responses are in the store; resume with: "
            f"modelbench run --resume {prepared.run_id} --run-dir {prepared.request.run_dir}{flags}"
        ) from None
    except BaseException:
        _mark(store, prepared.run_id, "failed", leg.wall_s)
        raise
    return outcome, filled
