"""SIGKILL at a random point, three times in a row, against an API SUT: the final store holds
the same responses as an uninterrupted run, and no item is stored twice."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

from modelbench.testing import MockServer, ServerState

N_ITEMS = 120


def command(url: str, run_dir) -> list[str]:
    return [
        sys.executable, "-m", "modelbench.cli", "run", "--sut", f"openai-compat:mock@{url}",
        "--prompt-set", "mb-full", "--max-items", str(N_ITEMS), "--concurrency", "4",
        "--run-dir", str(run_dir),
    ]  # fmt: skip


def stored(run_dir) -> dict[str, str]:
    path = run_dir / "modelbench.sqlite"
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return dict(db.execute("SELECT key, created_at FROM responses WHERE outcome = 'ok'"))
    except sqlite3.Error:
        return {}


def test_three_kills_then_the_same_store_as_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    rng = random.Random(7)
    with MockServer(ServerState(latency_s=0.05, record_requests=False)) as server:
        killed_at = []
        for _ in range(3):
            before = len(stored(tmp_path / "killed"))
            target = before + rng.randint(5, 25)
            proc = subprocess.Popen(
                command(server.url, tmp_path / "killed"),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 60
            while (
                proc.poll() is None
                and time.monotonic() < deadline
                and len(stored(tmp_path / "killed")) < target
            ):
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            killed_at.append(len(stored(tmp_path / "killed")))
        kept = stored(tmp_path / "killed")
        finish = subprocess.run(
            command(server.url, tmp_path / "killed"), env=env, capture_output=True, text=True
        )
        assert finish.returncode == 0, finish.stderr
        assert f"reused {len(kept)}/{N_ITEMS} stored responses" in finish.stdout
        clean = subprocess.run(
            command(server.url, tmp_path / "clean"), env=env, capture_output=True, text=True
        )
        assert clean.returncode == 0, clean.stderr
    assert killed_at == sorted(killed_at) and 0 < killed_at[0] < N_ITEMS
    final = stored(tmp_path / "killed")
    assert all(final[key] == created for key, created in kept.items())  # nothing redone
    assert set(final) == set(stored(tmp_path / "clean")) and len(final) == N_ITEMS
    with sqlite3.connect(tmp_path / "killed" / "modelbench.sqlite") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT item_uid) FROM responses").fetchone() == (
            N_ITEMS,
            N_ITEMS,
        )
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
