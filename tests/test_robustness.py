"""Shards and merging, resume, Ctrl-C, and failures of the store itself."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from modelbench import Store
from modelbench.cli import main
from modelbench.graders import DEFAULT_GRADERS

WIDE = {"COLUMNS": "200"}


def invoke(*args):
    return CliRunner(env=WIDE).invoke(main, [str(a) for a in args])


def response_keys(path):
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT key FROM responses")}


def test_shards_merge_into_the_same_store_as_one_run(tmp_path, tiny_llama):
    common = ["--sut", f"hf:{tiny_llama}", "--max-items", "24", "--max-new-tokens", "2"]
    for index in (1, 2, 3):
        result = invoke("run", *common, "--shard", f"{index}/3", "--run-dir", tmp_path / f"shard{index}")
        assert result.exit_code == 0, result.output
    sizes = [
        json.loads(next((tmp_path / f"shard{i}").glob("*/record.json")).read_text())["counts"]["items"]
        for i in (1, 2, 3)
    ]
    assert sum(sizes) == 24 and all(sizes)
    merged = tmp_path / "merged" / "modelbench.sqlite"
    result = invoke(
        "merge", *(tmp_path / f"shard{i}" / "modelbench.sqlite" for i in (1, 2, 3)), "--into", merged
    )
    assert result.exit_code == 0, result.output
    again = invoke("merge", tmp_path / "shard1" / "modelbench.sqlite", "--into", merged)
    assert "+0 responses" in again.output  # nothing duplicated
    whole = invoke("run", *common, "--run-dir", tmp_path / "merged")
    assert whole.exit_code == 0, whole.output
    verdicts = 24 * len(DEFAULT_GRADERS)
    assert f"reused 24/24 stored responses and {verdicts}/{verdicts} stored verdicts" in whole.output
    single = invoke("run", *common, "--run-dir", tmp_path / "single")
    assert single.exit_code == 0
    assert response_keys(merged) == response_keys(tmp_path / "single" / "modelbench.sqlite")
    assert Store(merged).integrity_ok()


def test_bad_shard_and_merge_inputs(tmp_path):
    assert invoke("run", "--shard", "4/3", "--run-dir", tmp_path).exit_code == 2
    assert invoke("run", "--shard", "x", "--run-dir", tmp_path).exit_code == 2
    result = invoke("merge", tmp_path / "missing.sqlite", "--into", tmp_path / "m.sqlite")
    assert result.exit_code == 2 and "no store at" in result.output


def test_resume_finishes_a_run_under_its_own_id(tmp_path, tiny_llama):
    args = ["--sut", f"hf:{tiny_llama}", "--max-items", "12", "--max-new-tokens", "2", "--run-dir", tmp_path]
    first = invoke("run", *args)
    run_id = first.output.split("run ", 1)[1].split(":", 1)[0]
    with sqlite3.connect(tmp_path / "modelbench.sqlite") as db:
        db.execute("UPDATE runs SET status = 'interrupted' WHERE run_id = ?", (run_id,))
        db.execute("DELETE FROM responses WHERE rowid IN (SELECT rowid FROM responses LIMIT 5)")
    resumed = invoke("run", "--resume", run_id, "--run-dir", tmp_path)
    assert resumed.exit_code == 0, resumed.output
    assert f"run {run_id}:" in resumed.output and "reused 7/12 stored responses" in resumed.output
    record = json.loads((tmp_path / run_id / "record.json").read_text())
    assert record["counts"]["responses_new"] == 5 and record["run_id"] == run_id
    assert invoke("run", "--resume", "nope", "--run-dir", tmp_path).exit_code == 2


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, tiny_llama):
    command = [
        sys.executable,
        "-m",
        "modelbench.cli",
        "run",
        "--sut",
        f"hf:{tiny_llama}",
        "--max-items",
        "24",
    ]
    command += ["--max-new-tokens", "200", "--batch-size", "2", "--run-dir", str(tmp_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        stored = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with sqlite3.connect(f"file:{tmp_path / 'modelbench.sqlite'}?mode=ro", uri=True) as db:
                    stored = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            except sqlite3.Error:
                stored = 0
            if stored >= 2:
                break
            time.sleep(0.05)
        if proc.poll() is not None:
            pytest.skip("the run finished before it could be interrupted")
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    elapsed = time.monotonic() - sent
    output = log.read_text()
    assert code == 130, output
    assert "resume with: modelbench run --resume" in output and "Traceback" not in output
    assert elapsed < 10  # the batch in flight is cut short, not waited for
    run_id = output.split("--resume ", 1)[1].split()[0]
    with sqlite3.connect(tmp_path / "modelbench.sqlite") as db:
        assert (
            db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0] == "interrupted"
        )
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] >= stored
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_full_disk_is_one_line_and_keeps_committed_work(tmp_path, tiny_llama, monkeypatch):
    args = [
        "run",
        "--sut",
        f"hf:{tiny_llama}",
        "--max-items",
        "12",
        "--max-new-tokens",
        "2",
        "--run-dir",
        tmp_path,
    ]
    assert invoke(*args).exit_code == 0
    before = response_keys(tmp_path / "modelbench.sqlite")

    def full(self):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "commit", full)
    result = invoke(*args[:-4], "--max-items", "24", "--run-dir", tmp_path)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "database or disk is full" in lines[0] and "Traceback" not in result.output
    monkeypatch.undo()
    assert before <= response_keys(tmp_path / "modelbench.sqlite")
    assert Store(tmp_path / "modelbench.sqlite").integrity_ok()


def test_a_locked_store_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "modelbench.sqlite"
    Store(path).close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setenv("MODELBENCH_LOCK_TIMEOUT", "0.2")
    result = invoke("run", "--max-items", "12", "--run-dir", tmp_path)
    holder.rollback()
    holder.close()
    assert result.exit_code == 2 and "locked" in result.output and "Traceback" not in result.output


def test_malformed_sut_config_is_one_line(tmp_path):
    config = tmp_path / "suts.yaml"
    config.write_text("suts:\n  x: [unclosed\n")
    result = invoke("run", "--sut-config", config, "--run-dir", tmp_path)
    assert result.exit_code == 2 and "invalid SUT registry" in result.output
    config.write_text("suts:\n  x: {adapter: huggingface}\n")
    result = invoke("run", "--sut", "x", "--sut-config", config, "--run-dir", tmp_path)
    assert result.exit_code == 2 and "names no weights" in result.output
