"""kill -9 in the middle of a run, then the same command again: nothing stored is lost or redone.

The run goes through a real subprocess. The test watches the store until some, but not all,
responses are committed, sends SIGKILL, and checks that the rerun keeps every stored response
(same `created_at`), generates only the rest, and ends where an uninterrupted run ends.
"""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelbench.graders import DEFAULT_GRADERS

STORE = "modelbench.sqlite"
N_ITEMS = 24
MIN_BEFORE_KILL = 4
# (max new tokens, batch size): the first try, then a slower one if the run outpaced the polling.
ATTEMPTS = [(48, 2), (128, 1)]
RUN_TIMEOUT_S = 300
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    # One torch thread: on a small, shared CPU box, thread oversubscription makes generation ~10x
    # slower, and the subprocess gains nothing from more threads on a model this small.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "COLUMNS": "250",
}


def command(model: Path, run_dir: Path, max_new_tokens: int, batch_size: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "modelbench.cli",
        "run",
        "--sut",
        f"hf:{model}",
        "--max-items",
        str(N_ITEMS),
        "--max-new-tokens",
        str(max_new_tokens),
        "--batch-size",
        str(batch_size),
        "--run-dir",
        str(run_dir),
    ]


def query(db_path: Path, sql: str, args: tuple = ()) -> list[tuple] | None:
    """Rows of a read-only query, or None while the store does not exist yet, lacks its tables or
    is locked."""
    if not db_path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:  # no such table, database is locked, ... while it starts
        return None


def stored_responses(db_path: Path, sut_uid: str) -> dict[str, tuple[str, str]]:
    """key -> (outcome, created_at) for one SUT's stored responses."""
    rows = query(db_path, "SELECT key, outcome, created_at FROM responses WHERE sut_uid = ?", (sut_uid,))
    assert rows is not None, f"cannot read {db_path}"
    return {key: (outcome, created) for key, outcome, created in rows}


def run_to_end(cmd: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def the_record(run_dir: Path) -> dict:
    """The one record in a run dir (a killed run writes none)."""
    records = sorted(run_dir.glob("*/record.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text("utf-8"))


def kill_mid_run(cmd: list[str], db_path: Path, log: Path) -> bool:
    """Start the run, SIGKILL it once MIN_BEFORE_KILL <= stored responses < N_ITEMS.

    False when the run finished (or stored everything) before the polling could catch it."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with log.open("w") as out:  # a file, not a pipe: an unread pipe could stall the run
        proc = subprocess.Popen(cmd, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    pytest.fail(f"the run did not reach {MIN_BEFORE_KILL} responses in {RUN_TIMEOUT_S}s")
                rows = query(db_path, "SELECT COUNT(*) FROM responses")
                if rows is not None and MIN_BEFORE_KILL <= rows[0][0] < N_ITEMS:
                    proc.kill()
                    break
                time.sleep(0.02)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode == -9:
        rows = query(db_path, "SELECT COUNT(*) FROM responses")
        assert rows is not None, "the store is unreadable after kill -9"
        return rows[0][0] < N_ITEMS
    assert proc.returncode == 0, f"the run failed on its own (exit {proc.returncode}):\n{log.read_text()}"
    return False


def test_kill_9_then_rerun_resumes_without_redoing_work(tiny_llama, tmp_path):
    sut_uid = f"hf:{tiny_llama}"
    for attempt, (max_new_tokens, batch_size) in enumerate(ATTEMPTS):
        run_dir = tmp_path / f"killed-{attempt}"
        cmd = command(tiny_llama, run_dir, max_new_tokens, batch_size)
        if kill_mid_run(cmd, run_dir / STORE, tmp_path / f"killed-{attempt}.log"):
            break
    else:
        pytest.skip(
            f"the tiny model finished all {N_ITEMS} items before polling caught it mid-run,"
            f" even with settings {ATTEMPTS[-1]}"
        )
    db_path = run_dir / STORE

    before = stored_responses(db_path, sut_uid)
    assert MIN_BEFORE_KILL <= len(before) < N_ITEMS
    assert all(outcome == "ok" for outcome, _ in before.values()), before
    assert not list(run_dir.glob("*/record.json")), "a killed run wrote a record"

    # created_at has one-second resolution: wait, so that a regenerated response would show.
    time.sleep(1.1)
    resumed = run_to_end(cmd)
    assert f"reused {len(before)}/{N_ITEMS} stored responses" in resumed.stdout, resumed.stdout

    after = stored_responses(db_path, sut_uid)
    assert len(after) == N_ITEMS
    assert all(outcome == "ok" for outcome, _ in after.values())
    for key, (_, created_at) in before.items():
        assert key in after, f"response {key} stored before the kill is gone"
        assert after[key][1] == created_at, f"response {key} was generated again"

    record = the_record(run_dir)
    counts = record["counts"]
    assert counts["items"] == N_ITEMS
    assert counts["responses_reused"] == len(before)
    assert counts["responses_new"] == N_ITEMS - len(before)
    assert counts["response_errors"] == 0
    assert counts["verdicts_new"] + counts["verdicts_reused"] == N_ITEMS * len(DEFAULT_GRADERS)
    statuses = query(db_path, "SELECT run_id, status FROM runs")
    assert (record["run_id"], "finished") in statuses

    # The same command, never interrupted, into a fresh run dir ends in the same place.
    fresh_dir = tmp_path / "fresh"
    run_to_end(command(tiny_llama, fresh_dir, max_new_tokens, batch_size))
    fresh = the_record(fresh_dir)
    assert fresh["counts"]["items"] == counts["items"]
    assert fresh["counts"]["responses_new"] == N_ITEMS

    def per_hazard(rec: dict) -> dict[str, tuple[int, int]]:
        (score,) = rec["scores"]
        return {h["hazard"]: (h["n"], h["n_valid"]) for h in score["hazards"]}

    assert per_hazard(record) == per_hazard(fresh)
    assert sum(n for n, _ in per_hazard(record).values()) == N_ITEMS
    assert set(stored_responses(fresh_dir / STORE, sut_uid)) == set(after)
