"""Stores and run records written by an earlier version still open, report, export and take new runs.

`tests/fixtures/store_v0.1.0` was written by modelbench 0.1.0 (its README says how); every test
works on a copy, so the fixture itself is never changed.
"""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelbench.cli import main
from modelbench.reports import RunRecord, load_record
from modelbench.store import STORE_NAME, Store
from modelbench.testing.mock_server import MockServer, ServerState

FIXTURE = Path(__file__).parent / "fixtures" / "store_v0.1.0"
RUNS = ("20261130-001823-8a2d46", "20261130-001824-b50542")
WIDE = {"COLUMNS": "200"}


@pytest.fixture
def old(tmp_path) -> Path:
    copy = tmp_path / "runs"
    shutil.copytree(FIXTURE, copy)
    return copy


def cli(*args: str):
    return CliRunner(env=WIDE).invoke(main, list(args))


def test_the_old_store_opens_with_its_runs_and_records(old):
    store = Store(old / STORE_NAME)
    try:
        assert set(store.finished_run_ids()) >= set(RUNS)
        for run_id in RUNS:
            written = RunRecord.model_validate_json((old / run_id / "record.json").read_text())
            assert written.record_version == 2
            # The store's own copy of the record is the same record.
            (old / run_id / "record.json").unlink()
            assert load_record(store, run_id) == written
    finally:
        store.close()


def test_reports_exports_and_the_leaderboard_of_old_runs(old, tmp_path):
    for run_id in RUNS:
        record = json.loads((old / run_id / "record.json").read_text())
        done = cli("report", run_id, "--run-dir", str(old), "--out", str(tmp_path / f"{run_id}.html"))
        assert done.exit_code == 0, done.output
        assert record["scores"][0]["sut_uid"] in (tmp_path / f"{run_id}.html").read_text()
        out = tmp_path / f"{run_id}.json"
        done = cli(
            "export",
            run_id,
            "--what",
            "scores",
            "--format",
            "jsonl",
            "--out",
            str(out),
            "--run-dir",
            str(old),
        )
        assert done.exit_code == 0, done.output
        rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        # One row per hazard and one overall, each as the record has it.
        written = {h["hazard"]: h for h in record["scores"][0]["hazards"]}
        assert len(rows) == len(written) + 1
        for row in rows:
            expected = written.get(row["hazard"], record["scores"][0]["overall"])
            assert row["grade"] == expected["grade"] and row["n_valid"] == expected["n_valid"]
    done = cli("leaderboard", "--run-dir", str(old), "--out", str(tmp_path / "board.html"))
    assert done.exit_code == 0, done.output
    board = (tmp_path / "board.html").read_text()
    assert "alpha" in board and "beta" in board


def test_a_new_run_into_the_old_store_keeps_the_old_runs(old):
    with MockServer(ServerState(refuse_fraction=0.6, record_requests=False)) as server:
        done = cli(
            "run", "--sut", f"openai-compat:alpha@{server.url}", "--graders", "refusal",
            "--max-items", "48", "--min-items", "3", "--seed", "3", "--run-dir", str(old),
        )  # fmt: skip
    assert done.exit_code == 0, done.output
    store = Store(old / STORE_NAME)
    try:
        finished = store.finished_run_ids()
        assert set(RUNS) < set(finished) and len(finished) == 3
        assert store.finished_run("latest")["run_id"] not in RUNS
        for run_id in RUNS:
            assert load_record(store, run_id).record_version == 2
    finally:
        store.close()


def test_a_run_that_lost_its_record_is_rescored_once_then_reported(old, tmp_path):
    import sqlite3

    run_id = RUNS[0]
    original = json.loads((old / run_id / "record.json").read_text())
    (old / run_id / "record.json").unlink()
    with sqlite3.connect(old / STORE_NAME) as db:  # as a store from before records were kept in it
        (summary,) = db.execute("SELECT summary FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        db.execute(
            "UPDATE runs SET summary = ? WHERE run_id = ?",
            (json.dumps({k: v for k, v in json.loads(summary).items() if k != "record"}), run_id),
        )
    out = tmp_path / "report.html"
    refused = cli("report", run_id, "--run-dir", str(old), "--out", str(out))
    assert refused.exit_code == 2 and not out.exists()
    assert f"modelbench rescore {run_id}" in refused.output and "Traceback" not in refused.output
    done = cli("rescore", run_id, "--run-dir", str(old))
    assert done.exit_code == 0, done.output
    assert f"rebuilt the record of run {run_id}" in done.output
    assert cli("report", run_id, "--run-dir", str(old), "--out", str(out)).exit_code == 0
    store = Store(old / STORE_NAME)
    try:
        rebuilt = load_record(store, run_id).model_dump(mode="json")
    finally:
        store.close()
    assert rebuilt["reconstructed"] and not original["reconstructed"]
    for again, first in zip(rebuilt["scores"], original["scores"], strict=True):
        assert again["overall"]["grade"] == first["overall"]["grade"]
        assert [h["grade"] for h in again["hazards"]] == [h["grade"] for h in first["hazards"]]
    # Rescoring again is refused: the run has its record now.
    assert cli("rescore", run_id, "--run-dir", str(old)).exit_code == 2
