"""Building and writing a run's record from typed parts (`modelbench.reports.record`).

`run_config` is what the run was asked and graded with (kept in the store when the run starts, so
that `--resume` finds its request); `run_work` is what the engine did; `run_timing` sums the legs;
`record_run` builds the record from those parts and the grades, writes `record.json` and keeps a
copy in the store; `write_report` draws the run's HTML page from it.
"""

import logging
from pathlib import Path

from modelbench.engine import RunOutcome
from modelbench.errors import UserError
from modelbench.graders import AnswerQualityClassifier, declared_languages
from modelbench.hashing import file_sha256
from modelbench.reports import (
    ExecutorSection,
    RunConfig,
    RunCounts,
    RunGrades,
    RunRecord,
    RunTiming,
    RunWork,
    SUTSummary,
    build_record,
    write_record,
)
from modelbench.run_plan import PreparedRun
from modelbench.store import Store


def run_config(prepared: PreparedRun) -> RunConfig:
    request = prepared.request
    return RunConfig.model_validate(
        {
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
            "grader_languages": {
                e.uid: None if (langs := declared_languages(e)) is None else list(langs)
                for e in prepared.evaluators
            },
            "language_notices": [notice.model_dump() for notice in prepared.language_notices],
            "ensemble": prepared.ensemble.model_dump(),
            "reliability_file": None
            if request.reliability is None
            else {"path": str(request.reliability), "sha256": file_sha256(request.reliability)},
            "standard": {"name": prepared.standard.name, "provenance": prepared.standard.provenance},
            "sut_options": request.sut_options.model_dump(mode="json"),
            "request": request.model_dump(mode="json"),
        }
    )


def run_work(prepared: PreparedRun, outcome: RunOutcome) -> RunWork:
    """The run's counts and each SUT's summary (its metadata, new work and throughput)."""
    stats = outcome.sut_stats
    counts = RunCounts(
        items=len(prepared.baseline_uids),
        benign_items=len(prepared.benign_uids),
        attacked_items=len(prepared.attacked_uids),
        responses_new=sum(s.responses_new for s in stats.values()),
        responses_reused=sum(s.responses_reused for s in stats.values()),
        response_errors=sum(s.response_errors for s in stats.values()),
        verdicts_new=outcome.verdicts_new,
        verdicts_reused=outcome.verdicts_reused,
        verdicts_invalid=outcome.verdicts_invalid,
    )
    suts = {
        sut.uid: SUTSummary(
            metadata=sut.metadata(),
            responses_new=stats[sut.uid].responses_new,
            responses_reused=stats[sut.uid].responses_reused,
            response_errors=stats[sut.uid].response_errors,
            outcomes_new=stats[sut.uid].outcomes,
            completion_tokens_new=stats[sut.uid].completion_tokens,
            generation_s=round(stats[sut.uid].generation_s, 3),
            tokens_per_s=stats[sut.uid].tokens_per_s,
        )
        for sut in prepared.suts
    }
    return RunWork(counts, suts, outcome.errors)


def run_timing(store: Store, run_id: str, started_at: str, wall_s: float | None) -> RunTiming:
    """A resumed run keeps its first start and sums the wall time of every leg; a store without
    legs (a run from before they were kept) gives `started_at` and `wall_s`."""
    legs = store.run_timing(run_id)
    if not legs or not legs.get("wall_s"):
        legs = {"started_at": started_at, "wall_s": wall_s, "legs": []}
    wall = legs["wall_s"]
    return RunTiming.model_validate(
        {
            "started_at": legs["started_at"],
            "wall_s": None if wall is None else round(wall, 3),
            "legs": legs["legs"],
        }
    )


def record_run(
    prepared: PreparedRun,
    store: Store,
    config: RunConfig,
    grades: RunGrades,
    work: RunWork,
    timing: RunTiming,
    executor: ExecutorSection,
) -> tuple[RunRecord, Path]:
    """Build the record, write `record.json` and mark the run finished in the store with a copy of
    the record, so that reports survive moved or deleted run folders."""
    record = build_record(prepared.run_id, config, grades, work, timing, executor)
    path = write_record(record, prepared.request.run_dir / prepared.run_id)
    store.finish_run(
        prepared.run_id,
        "finished",
        {
            "counts": work.counts.model_dump(),
            "overall": {s.sut_uid: s.overall.grade for s in grades.scores},
            "flags": {q.sut_uid: q.flag for q in grades.quality if q.flag},
            "record": record.model_dump(mode="json"),
        },
    )
    return record, path


def write_report(store: Store, run_id: str, run_dir: Path) -> Path | None:
    """The run's HTML page beside its record; None, with a warning, when it cannot be drawn."""
    try:
        from modelbench.reports import write_run_report

        return write_run_report(store, run_id, run_dir / run_id / "report.html")
    except UserError as exc:  # a report is a view of the run; failing to draw it loses nothing
        logging.getLogger("modelbench").warning("no HTML report: %s", exc)
        return None
