"""Rebuilding a finished run's lost record from the store: `modelbench rescore RUN_ID`.

Reports read a run's record and never re-score it (`modelbench.reports.loading`). When a run has
lost its record (no copy in the store, no `record.json`), this re-scores it once from what the
store kept: the per-item ensemble scores, the run's configuration and grading rules, and its
reference standard. The result is marked `reconstructed` (package versions, throughput and SUT
metadata were not kept; timings come from the store's legs) and saved into the store's copy of the
run summary, where every report finds it.
"""

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from modelbench.core import is_baseline
from modelbench.errors import UserError
from modelbench.hazards import load_standard
from modelbench.reports import (
    RunCounts,
    RunRecord,
    RunWork,
    SUTSummary,
    as_run_config,
    build_record,
    load_record,
    record_path,
)
from modelbench.run_record import run_timing
from modelbench.run_scoring import grade
from modelbench.scoring import GradingRules, ItemScore, ScoredItem


def rebuild_record(store: Any, run_id: str) -> RunRecord:
    """Re-score finished run `run_id` (or `latest`) from the store and keep the record in the store.

    Refuses, with a one-line UserError, a run that still has a readable record (rebuilding would
    replace measured versions and throughput with less) and a run whose reference standard cannot
    be loaded.
    """
    info = store.finished_run(run_id)
    run_id = info["run_id"]
    try:
        load_record(store, run_id)
    except UserError:
        pass  # no record, or an unreadable one: rebuild it
    else:
        kept = isinstance((info.get("summary") or {}).get("record"), dict)
        where = "a copy in the store" if kept else str(record_path(store, run_id))
        raise UserError(f"run '{run_id}' still has its record ({where}): nothing to rebuild")
    config = as_run_config(info["config"])
    standard_name = config.standard.name
    try:
        if not standard_name:
            raise UserError("the run's configuration names no standard")
        standard = load_standard(standard_name, search=[Path(store.path).parent / "standards"])
    except UserError as exc:
        raise UserError(f"cannot rescore run '{run_id}': its standard cannot be loaded: {exc}") from None
    by_sut: dict[str, list[ScoredItem]] = defaultdict(list)
    rows = store.run_rows(run_id)
    for row in rows:
        items = by_sut[row["sut_uid"]]  # a SUT that answered only benign prompts still has a score
        if is_baseline(row["source"]):  # benign prompts are never graded; attacked ones apart
            items.append(_scored_item(row))
    seed = config.prompt_set.seed or 0
    # The run's own grading rules; a run from before they existed graded raw, without a minimum.
    rules = GradingRules(
        rates=config.error_rates, grade_on=config.request.grade_on, min_items=config.request.min_items
    )
    # The shipped classifier classifies again; each SUT's quality names its fingerprint, which
    # differs from the run's `config.answer_quality` when the classifier was refitted since.
    grades = grade(
        by_sut,
        rows,
        standard,
        rules,
        config.ensemble,
        [a.spec for a in config.attacks],
        seed,
        quality=bool(config.answer_quality),
    )
    # Throughput and SUT metadata were not kept: each SUT has its uid alone.
    work = RunWork(
        RunCounts.model_validate((info.get("summary") or {}).get("counts") or {}),
        {uid: SUTSummary(metadata={"uid": uid}) for uid in by_sut},
    )
    timing = run_timing(store, run_id, info["started_at"], _seconds_between(info))
    record = build_record(run_id, config, grades, work, timing, reconstructed=True)
    # Kept where reports look first, beside the summary's counts and grades; the run's status and
    # finish time stay its own.
    store.keep_record(run_id, record.model_dump(mode="json"))
    return record


def _scored_item(row: dict[str, Any]) -> ScoredItem:
    members = row["member_verdicts"]
    score = None
    if members or row["p_unsafe"] is not None:
        score = ItemScore(
            p_unsafe=row["p_unsafe"],
            is_safe=row["is_safe"],
            entropy=row["entropy"],
            uncertain=row["uncertain"],
            n_valid=sum(1 for m in members if m.get("p_unsafe") is not None),
            member_verdicts=members,
        )
    return ScoredItem(item_uid=row["item_uid"], hazard=row["hazard"], persona=row["persona"], score=score)


def _seconds_between(info: dict[str, Any]) -> float | None:
    try:
        start = datetime.fromisoformat(info["started_at"])
        end = datetime.fromisoformat(info["finished_at"])
    except (TypeError, ValueError):
        return None
    return (end - start).total_seconds()
