"""Opening a finished run's record: the one way reports, the leaderboard and exports read a run.

Reports read the record the runner built (`modelbench.reports.record`); they never rebuild or
re-score it. A run that has lost its record is an error naming the fix, `modelbench rescore`
(`modelbench.rescore.rebuild_record`), which re-scores it from the store once and keeps the result.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelbench.errors import UserError
from modelbench.reports.record import RunConfig, RunRecord

RECORD_NAME = "record.json"


@dataclass
class RunData:
    run_id: str
    info: dict[str, Any]
    record: RunRecord
    scores: list[Any]  # the record's SUTScores
    rows: list[dict[str, Any]]


def record_path(store: Any, run_id: str) -> Path:
    """Where the runner writes a run's record: `<run_dir>/<run_id>/record.json`, beside the store."""
    return Path(store.path).parent / run_id / RECORD_NAME


def load_record(store: Any, run_id: str) -> RunRecord:
    """The record of a finished run (`latest` names the newest), from the one place it lives.

    In order: the record kept in the store (`runs.summary["record"]`), then `record.json` beside the
    store, where the runner writes it. With neither, a one-line UserError names the fix.
    """
    info = store.finished_run(run_id)
    run_id = info["run_id"]
    summary = info.get("summary") or {}
    if isinstance(summary.get("record"), dict):
        return _validated(summary["record"], f"the store's copy of run {run_id}'s record", info)
    path = record_path(store, run_id)
    if path.is_file():
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read run record {path}: {exc}") from None
        return _validated(data, str(path), info)
    raise UserError(
        f"run '{run_id}' has no record (none in the store, no {path}); rebuild it from the store's "
        f"per-item scores with `modelbench rescore {run_id} --run-dir {path.parent.parent}`"
    )


def _validated(data: Any, where: str, info: dict[str, Any]) -> RunRecord:
    try:
        record = RunRecord.model_validate(data)
        # A record without its configuration takes the one the store kept when the run started.
        if not record.config.model_fields_set and not record.config.model_extra and info.get("config"):
            record.config = RunConfig.model_validate(info["config"])
    except ValidationError as exc:
        raise UserError(f"invalid run record in {where}: {str(exc).splitlines()[0]}") from None
    return record


def load_run(store: Any, run_id: str) -> RunData:
    """A finished run's record with its store info and per-item rows: what its report shows."""
    record = load_record(store, run_id)
    info = store.finished_run(run_id)
    run_id = info["run_id"]
    return RunData(run_id, info, record, record.scores, store.run_rows(run_id))
