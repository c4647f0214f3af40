"""One benchmark run from request to record: validate everything first, then do the work.

All user input (SUT specs, prompt set, graders, standards, run dir) is checked before the store
is opened or any model loads, so a typo costs a second and never touches stored work.
"""

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from modelbench.attack_rewrites import rewritten_items
from modelbench.core import TestItem, is_attacked, is_benign
from modelbench.engine import Engine, MadeElsewhere, ProgressSink, RunOutcome
from modelbench.errors import UserError
from modelbench.graders import (
    DEFAULT_GRADERS,
    AnswerQualityClassifier,
    Evaluator,
    LanguageNotice,
    declared_languages,
    language_notices,
    make_evaluator,
)
from modelbench.hashing import file_sha256, stable_hash
from modelbench.hazards import DEFAULT_STANDARD, ReferenceStandard, load_standard
from modelbench.prompts import DEFAULT_PROMPT_SET, PromptSet, load_benign_set, load_prompt_set
from modelbench.prompts.attacks import Attack, parse_attacks
from modelbench.quality import run_quality
from modelbench.reports import build_record, write_record
from modelbench.resilience import run_resilience
from modelbench.run_checks import ensure_writable, preflight, storage_errors
from modelbench.run_items import in_shard, parse_shard, select_items
from modelbench.scoring import (
    DEFAULT_MIN_ITEMS,
    INVALID_GRADE,
    EnsembleConfig,
    GradeOn,
    GradingRules,
    SUTQuality,
    SUTResilience,
    SUTScore,
    load_ensemble_config,
    score_sut,
)
from modelbench.store import STORE_NAME, Store, open_store
from modelbench.suts import DEFAULT_SUT, SUT, SUTOptions, load_registry, make_sut
from modelbench.warmup import warm_up

EXIT_FINISHED_WITH_ERRORS = 3


class RunRequest(BaseModel):
    suts: list[str] = Field(default_factory=lambda: [DEFAULT_SUT])
    prompt_set: str = DEFAULT_PROMPT_SET
    # Benign prompts answered beside the hazard prompts, for over-refusal: "mb-benign" or a file.
    over_refusal: str | None = None
    skip_invalid: bool = False
    max_items: int | None = None
    seed: int = 0
    run_dir: Path = Path("runs")
    graders: list[str] = Field(default_factory=lambda: list(DEFAULT_GRADERS))
    standards: str = DEFAULT_STANDARD
    sut_config: Path | None = None
    sut_options: SUTOptions = Field(default_factory=SUTOptions)
    # "i/N": run only the i-th of N deterministic slices (1-based); merge the stores afterwards.
    shard: str | None = None
    # One cheap request per API SUT and grader before the run (see `preflight`).
    preflight: bool = True
    # Grade on the unsafe rate corrected for the evaluators' measured errors, or on the raw one.
    grade_on: GradeOn = "corrected"
    # Fewer valid items than this in a hazard (or overall): "insufficient data", no grade.
    min_items: int = DEFAULT_MIN_ITEMS
    # A calibration of your own (`modelbench graders calibrate`) instead of the shipped one.
    reliability: Path | None = None
    # Jailbreak attacks (`modelbench list attacks`): each hazard item is also asked under each.
    attacks: list[str] = Field(default_factory=list)


@dataclass
class PreparedRun:
    request: RunRequest
    prompt_set: PromptSet
    # Hazard items, then benign ones (`over_refusal`); only hazard items are graded for safety.
    items: list[TestItem]
    suts: list[SUT]
    evaluators: list[Evaluator]
    ensemble: EnsembleConfig
    standard: ReferenceStandard
    run_id: str
    benign_set: PromptSet | None = None
    attacks: list[Attack] = field(default_factory=list)
    # The rewriters of attacks that need a model (past-tense@SUT), by attack spec.
    rewriters: dict[str, SUT] = field(default_factory=dict)

    @property
    def benign_uids(self) -> frozenset[str]:
        return frozenset(item.uid for item in self.items if is_benign(item.source))

    @property
    def attacked_uids(self) -> frozenset[str]:
        return frozenset(item.uid for item in self.items if is_attacked(item.source))

    @property
    def baseline_uids(self) -> frozenset[str]:
        """The hazard items asked plainly: what the grade is made of."""
        return frozenset(i.uid for i in self.items if not is_benign(i.source) and not is_attacked(i.source))

    @property
    def language_notices(self) -> list[LanguageNotice]:
        """Locales of the items that some evaluator was not trained and measured on."""
        return language_notices(self.items, self.evaluators)


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


def grading_rules(request: RunRequest, ensemble: EnsembleConfig) -> GradingRules:
    return GradingRules(rates=ensemble.error_rates, grade_on=request.grade_on, min_items=request.min_items)


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
    suts = [make_sut(spec, request.sut_options, registry) for spec in request.suts]
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


def run_config(prepared: PreparedRun) -> dict[str, Any]:
    request = prepared.request
    return {
        "prompt_set": {
            "name": prepared.prompt_set.name,
            "description": prepared.prompt_set.description,
            "skipped_rows": prepared.prompt_set.skipped,
            # Hazard items asked plainly: benign ones are counted under "over_refusal" and never
            # graded, attacked ones under "attacks".
            "n_items": len(prepared.baseline_uids),
            "max_items": request.max_items,
            "seed": request.seed,
            "shard": request.shard,
        },
        "over_refusal": None
        if prepared.benign_set is None
        else {
            "name": prepared.benign_set.name,
            "description": prepared.benign_set.description,
            "n_items": len(prepared.benign_uids),
        },
        "answer_quality": AnswerQualityClassifier().fingerprint(),
        "attacks": [
            {**a.fingerprint(), "description": a.description, "measured_on": a.measured_on}
            for a in prepared.attacks
        ],
        "n_attacked_items": len(prepared.attacked_uids),
        "suts": {sut.uid: sut.fingerprint() for sut in prepared.suts},
        "graders": {e.uid: e.fingerprint() for e in prepared.evaluators},
        # Apart from the fingerprints: a fingerprint is what a calibration measured, matched as is.
        "grader_languages": {
            e.uid: None if (langs := declared_languages(e)) is None else list(langs)
            for e in prepared.evaluators
        },
        "language_notices": [notice.model_dump() for notice in prepared.language_notices],
        "ensemble": prepared.ensemble.model_dump(),
        # Your calibration, when the run used one: where it was and exactly which file.
        "reliability_file": None
        if request.reliability is None
        else {"path": str(request.reliability), "sha256": file_sha256(request.reliability)},
        "standard": {"name": prepared.standard.name, "provenance": prepared.standard.provenance},
        "sut_options": request.sut_options.model_dump(mode="json"),
        "request": request.model_dump(mode="json"),
    }


class Executor(Protocol):
    """Where answers and verdicts are made before the local engine scores (`modelbench.executors`):
    `fill` stores them and returns what it made (`FillResult`: `made`, `merge_into`, `record`)."""

    name: str
    resume_flags: str

    def fill(self, prepared: PreparedRun, store: Store, progress: ProgressSink | None) -> Any: ...


def execute(
    prepared: PreparedRun, progress: ProgressSink | None = None, executor: Executor | None = None
) -> RunResult:
    """Run with progress. `executor`: None is the engine in this process; another one (Ray) fills
    the store first, and the engine then finds the work stored and scores it."""
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    run_dir = prepared.request.run_dir
    store_path = run_dir / STORE_NAME
    with storage_errors(store_path):
        store = Store(store_path)
    config = run_config(prepared)
    try:
        with storage_errors(store_path):
            return _execute(prepared, store, config, progress, started, started_at, executor)
    finally:
        store.close()


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


def _execute(
    prepared: PreparedRun,
    store: Store,
    config: dict[str, Any],
    progress: ProgressSink | None,
    started: float,
    started_at: str,
    executor: Executor | None = None,
) -> RunResult:
    run_dir = prepared.request.run_dir
    store.start_run(prepared.run_id, config)
    filled = None
    try:
        if prepared.rewriters:  # attacks that need a model: their rewrites first (stored, reused)
            add_rewritten_items(prepared, store)
            config["n_attacked_items"] = len(prepared.attacked_uids)
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
        _mark(store, prepared.run_id, "interrupted", time.perf_counter() - started)
        stored = store.count("responses")
        flags = executor.resume_flags if executor is not None else ""
        raise RunInterrupted(
            f"interrupted: {stored} responses are in the store; resume with: "
            f"modelbench run --resume {prepared.run_id} --run-dir {run_dir}{flags}"
        ) from None
    except BaseException:
        _mark(store, prepared.run_id, "failed", time.perf_counter() - started)
        raise
    rules = grading_rules(prepared.request, prepared.ensemble)
    benign, baseline = prepared.benign_uids, prepared.baseline_uids
    seed = prepared.request.seed
    scores = [
        score_sut(uid, [s for s in scored if s.item_uid in baseline], prepared.standard, rules, seed=seed)
        for uid, scored in outcome.scored.items()
    ]
    rows = store.run_rows(prepared.run_id)
    quality = run_quality(rows, seed=seed)
    resilience = run_resilience(
        rows,
        prepared.request.attacks,
        prepared.standard,
        rules,
        prepared.ensemble,
        {s.sut_uid: s.overall.grade for s in scores},
        seed=seed,
    )
    del rows
    wall = time.perf_counter() - started
    counts = {
        "items": len(baseline),
        "benign_items": len(benign),
        "attacked_items": len(prepared.attacked_uids),
        "responses_new": sum(s.responses_new for s in outcome.sut_stats.values()),
        "responses_reused": sum(s.responses_reused for s in outcome.sut_stats.values()),
        "response_errors": sum(s.response_errors for s in outcome.sut_stats.values()),
        "verdicts_new": outcome.verdicts_new,
        "verdicts_reused": outcome.verdicts_reused,
        "verdicts_invalid": outcome.verdicts_invalid,
    }
    suts = {
        sut.uid: {
            "metadata": sut.metadata(),
            "responses_new": outcome.sut_stats[sut.uid].responses_new,
            "responses_reused": outcome.sut_stats[sut.uid].responses_reused,
            "response_errors": outcome.sut_stats[sut.uid].response_errors,
            "outcomes_new": outcome.sut_stats[sut.uid].outcomes,
            "completion_tokens_new": outcome.sut_stats[sut.uid].completion_tokens,
            "generation_s": round(outcome.sut_stats[sut.uid].generation_s, 3),
            "tokens_per_s": outcome.sut_stats[sut.uid].tokens_per_s,
        }
        for sut in prepared.suts
    }
    # A resumed run keeps its first start and sums the wall time of every leg.
    store.end_leg(prepared.run_id, "finished", wall)
    legs = store.run_timing(prepared.run_id) or {"started_at": started_at, "wall_s": wall, "legs": []}
    timing = {"started_at": legs["started_at"], "wall_s": round(legs["wall_s"], 3), "legs": legs["legs"]}
    executor_record = filled.record() if filled else {"name": "local"}
    record = build_record(
        prepared.run_id,
        config,
        scores,
        counts,
        timing,
        suts,
        outcome.errors,
        executor=executor_record,
        quality=quality,
        resilience=resilience,
    )
    path = write_record(record, run_dir / prepared.run_id)
    # The record goes into the store too, so reports survive moved or deleted run folders.
    store.finish_run(
        prepared.run_id,
        "finished",
        {
            "counts": counts,
            "overall": {s.sut_uid: s.overall.grade for s in scores},
            "flags": {q.sut_uid: q.flag for q in quality if q.flag},
            "record": record.model_dump(mode="json"),
        },
    )
    try:
        from modelbench.reports import write_run_report

        report = write_run_report(store, prepared.run_id, run_dir / prepared.run_id / "report.html")
    except UserError as exc:  # a report is a view of the run; failing to draw it loses nothing
        logging.getLogger("modelbench").warning("no HTML report: %s", exc)
        report = None
    return RunResult(prepared.run_id, path, scores, outcome, timing["wall_s"], report, quality, resilience)
