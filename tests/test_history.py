"""A run's history is immutable: later runs never rewrite what an earlier run stored.

A failed response is retried by the next run, and the retry takes its key in `responses`; the
run that saw the failure keeps it in `response_failures`, so its rows (export, reports) still
show its own outcome. Resumed runs keep their first start and sum the wall time of their legs.
Real SQLite throughout, and a real local HTTP server for the end-to-end case.
"""

import json
import sqlite3

import pytest
from click.testing import CliRunner

from modelbench import LOST_FAILURE, SCHEMA_VERSION, RunRequest, Store, UserError, execute, prepare
from modelbench.cli import main
from modelbench.graders import Verdict
from modelbench.prompts import TestItem
from modelbench.scoring import EnsembleConfig, combine
from modelbench.suts import SUTOptions, SUTResponse
from modelbench.testing import MockServer, ServerState

ITEMS = [
    TestItem(uid=f"i{n}", hazard="vcr", persona="normal", text=f"prompt {n}", source="t") for n in range(3)
]
KEYS = [f"k{n}" for n in range(3)]


def _failures(run: str) -> list[tuple[str, SUTResponse]]:
    return [
        (
            key,
            SUTResponse(
                sut_uid="s", item_uid=item.uid, outcome="error", error=f"HTTP 500 in {run}", attempts=2
            ),
        )
        for key, item in zip(KEYS, ITEMS, strict=True)
    ]


def _answers() -> list[tuple[str, SUTResponse]]:
    return [
        (key, SUTResponse(sut_uid="s", item_uid=item.uid, text=f"answer to {item.uid}", completion_tokens=3))
        for key, item in zip(KEYS, ITEMS, strict=True)
    ]


def _score(p_unsafe: float = 0.1):
    return combine([Verdict(evaluator_uid="refusal", p_unsafe=p_unsafe, raw="x")], EnsembleConfig())


def _store_failed_run(store: Store, run_id: str) -> None:
    """What the engine writes for a run whose SUT failed on every item."""
    store.start_run(run_id, {})
    store.put_responses(_failures(run_id), run_id=run_id)
    store.put_item_scores(run_id, [("s", item.uid, key, None) for key, item in zip(KEYS, ITEMS, strict=True)])
    store.finish_run(run_id, "finished", {})


def _store_answered_run(store: Store, run_id: str) -> None:
    store.start_run(run_id, {})
    store.put_responses(_answers(), run_id=run_id)
    store.put_item_scores(
        run_id, [("s", item.uid, key, _score()) for key, item in zip(KEYS, ITEMS, strict=True)]
    )
    store.finish_run(run_id, "finished", {})


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "s.sqlite")
    opened.put_items(ITEMS)
    yield opened
    opened.close()


# -- problem 1: a run keeps its own outcomes ----------------------------------------------------
def test_a_later_success_does_not_rewrite_an_earlier_runs_failures(store):
    _store_failed_run(store, "A")
    _store_answered_run(store, "B")
    assert set(store.get_responses(KEYS)) == set(KEYS)  # B's answers are there to reuse
    rows_a = store.run_rows("A")
    assert [r["outcome"] for r in rows_a] == ["error"] * 3
    assert all(r["error"] == "HTTP 500 in A" and r["response"] is None for r in rows_a)
    assert all(r["p_unsafe"] is None and r["member_verdicts"] == [] for r in rows_a)
    rows_b = store.run_rows("B")
    assert [r["outcome"] for r in rows_b] == ["ok"] * 3
    assert [r["response"] for r in rows_b] == [f"answer to {i.uid}" for i in ITEMS]
    assert all(r["error"] is None for r in rows_b)
    assert store.count("response_failures") == 3 and store.count("responses") == 3


def test_each_run_keeps_its_own_failure_text(store):
    _store_failed_run(store, "A")
    _store_failed_run(store, "B")
    _store_answered_run(store, "C")
    assert {r["error"] for r in store.run_rows("A")} == {"HTTP 500 in A"}
    assert {r["error"] for r in store.run_rows("B")} == {"HTTP 500 in B"}
    assert {r["outcome"] for r in store.run_rows("C")} == {"ok"}


def test_a_gradable_response_is_never_replaced(store):
    store.put_responses(_answers(), run_id="A")
    store.put_responses(_failures("B"), run_id="B")  # e.g. a concurrent run that failed
    other = [(k, r.model_copy(update={"text": "a second answer"})) for k, r in _answers()]
    store.put_responses(other, run_id="C")
    assert {r.text for r in store.get_responses(KEYS).values()} == {f"answer to {i.uid}" for i in ITEMS}
    assert store.count("response_failures") == 3  # B's failures are still its history


def test_a_resumed_run_that_succeeds_shows_its_success(store):
    """The same run failing, then answering on resume: its latest outcome is its record."""
    _store_failed_run(store, "A")
    _store_answered_run(store, "A")
    assert [r["outcome"] for r in store.run_rows("A")] == ["ok"] * 3
    # ... and failing twice shows the latest failure.
    store.start_run("B", {})
    store.put_responses([(KEYS[0], SUTResponse(sut_uid="s", item_uid="i0", outcome="error", error="x"))], "B")
    store.put_responses(
        [(KEYS[0], SUTResponse(sut_uid="s", item_uid="i0", outcome="empty_choices", error="y"))], "B"
    )
    store.put_item_scores("B", [("s", "i0", KEYS[0], None)])
    [row] = store.run_rows("B")
    assert (row["outcome"], row["error"]) == ("empty_choices", "y")


def test_failures_without_a_run_are_kept_as_before(store):
    store.put_responses(_failures("none"))
    assert store.count("response_failures") == 0 and store.count("responses") == 3
    assert store.get_responses(KEYS) == {}


def test_merge_copies_each_runs_failures_once(tmp_path, store):
    _store_failed_run(store, "A")
    _store_answered_run(store, "B")
    target = Store(tmp_path / "merged.sqlite")
    try:
        added = target.merge_from(store.path)
        assert added["response_failures"] == 3 and added["responses"] == 3
        assert target.merge_from(store.path)["response_failures"] == 0
        assert {r["outcome"] for r in target.run_rows("A")} == {"error"}
        assert {r["outcome"] for r in target.run_rows("B")} == {"ok"}
    finally:
        target.close()


def test_an_export_shows_each_runs_own_outcomes(tmp_path):
    """A real HTTP server refuses every request of the first run and answers the second: the
    second run retries and stores the answers, and the first run's export still has its errors."""
    request = RunRequest(
        suts=["openai-compat:mock"],
        graders=["refusal"],
        max_items=4,
        run_dir=tmp_path,
        sut_options=SUTOptions(max_attempts=1, timeout_s=10.0),
    )
    with MockServer(ServerState(record_requests=False)) as server:
        request.suts = [f"openai-compat:mock@{server.url}"]
        server.script(*["400"] * 4)
        first = execute(prepare(request))
        assert first.outcome.sut_stats[request.suts[0]].response_errors == 4
        second = execute(prepare(request))
        assert second.outcome.sut_stats[request.suts[0]].responses_new == 4
        assert second.outcome.sut_stats[request.suts[0]].response_errors == 0

    def export(run_id: str) -> list[dict]:
        out = tmp_path / f"{run_id}.jsonl"
        args = ["export", run_id, "--run-dir", str(tmp_path), "--format", "jsonl", "--out", str(out)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in out.read_text("utf-8").splitlines()]

    rows_a = export(first.run_id)
    assert len(rows_a) == 4
    assert {r["outcome"] for r in rows_a} == {"error"}
    assert all("HTTP 400" in r["error"] and r["response"] is None for r in rows_a)
    rows_b = export(second.run_id)
    assert {r["outcome"] for r in rows_b} == {"ok"}
    assert all(r["response"].startswith("Mock answer") and r["error"] is None for r in rows_b)
    assert {r["response_key"] for r in rows_a} == {r["response_key"] for r in rows_b}


# -- migration from a version-1 store -----------------------------------------------------------
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    uid TEXT PRIMARY KEY, hazard TEXT NOT NULL, subhazard TEXT, persona TEXT NOT NULL,
    locale TEXT NOT NULL, text TEXT NOT NULL, source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, sut_uid TEXT NOT NULL, item_uid TEXT NOT NULL, outcome TEXT NOT NULL,
    text TEXT, error TEXT, latency_s REAL, prompt_tokens INTEGER, completion_tokens INTEGER,
    attempts INTEGER, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY, response_key TEXT NOT NULL, evaluator_uid TEXT NOT NULL,
    p_unsafe REAL, categories TEXT NOT NULL, raw TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL,
    config TEXT NOT NULL, summary TEXT
);
CREATE TABLE IF NOT EXISTS run_responses (
    run_id TEXT NOT NULL, sut_uid TEXT NOT NULL, item_uid TEXT NOT NULL, response_key TEXT NOT NULL,
    PRIMARY KEY (run_id, sut_uid, item_uid)
);
CREATE TABLE IF NOT EXISTS run_item_scores (
    run_id TEXT NOT NULL, sut_uid TEXT NOT NULL, item_uid TEXT NOT NULL, response_key TEXT NOT NULL,
    p_unsafe REAL, is_safe INTEGER, entropy REAL, uncertain INTEGER NOT NULL, members TEXT NOT NULL,
    PRIMARY KEY (run_id, sut_uid, item_uid)
);
INSERT INTO meta VALUES ('schema_version', '1');
"""
T0 = "2026-01-01T00:00:00+00:00"
MEMBERS = '[{"evaluator_uid": "refusal", "p_unsafe": 0.1, "categories": [], "raw": "x"}]'


def _v1_store(path) -> None:
    """Run "old" failed on k0 (still a failure in `responses`) and k1 (since answered by run
    "new", which replaced the row); "new" answered k1 and k2."""
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.executemany(
        "INSERT INTO items VALUES (?, ?, NULL, ?, 'en_US', ?, ?)",
        [(i.uid, i.hazard, i.persona, i.text, i.source) for i in ITEMS],
    )
    db.executemany(
        "INSERT INTO responses VALUES (?, 's', ?, ?, ?, ?, NULL, NULL, NULL, 1, ?)",
        [
            ("k0", "i0", "error", None, "HTTP 503", T0),
            ("k1", "i1", "ok", "answer", None, T0),
            ("k2", "i2", "ok", "answer", None, T0),
        ],
    )
    db.executemany(
        "INSERT INTO runs VALUES (?, ?, ?, 'finished', '{}', NULL)", [("old", T0, T0), ("new", T0, T0)]
    )
    db.executemany(
        "INSERT INTO run_item_scores VALUES (?, 's', ?, ?, ?, ?, NULL, 0, ?)",
        [
            ("old", "i0", "k0", None, None, "[]"),
            ("old", "i1", "k1", None, None, "[]"),
            ("new", "i1", "k1", 0.1, 1, MEMBERS),
            ("new", "i2", "k2", 0.1, 1, MEMBERS),
        ],
    )
    db.commit()
    db.close()


def test_a_version_1_store_is_migrated_once(tmp_path):
    path = tmp_path / "v1.sqlite"
    _v1_store(path)
    store = Store(path)
    assert store.schema_version() == SCHEMA_VERSION == 2
    old = {r["item_uid"]: r for r in store.run_rows("old")}
    assert (old["i0"]["outcome"], old["i0"]["error"]) == ("error", "HTTP 503")
    assert (old["i1"]["outcome"], old["i1"]["error"], old["i1"]["response"]) == ("error", LOST_FAILURE, None)
    assert {r["outcome"] for r in store.run_rows("new")} == {"ok"}
    assert store.count("response_failures") == 2 and store.count("responses") == 3
    assert store.run_timing("old") == {"started_at": T0, "wall_s": None, "legs": []}
    store.close()
    again = Store(path)
    assert again.schema_version() == 2 and again.count("response_failures") == 2
    assert again.run_rows("old") == list(old.values())
    again.close()


def test_a_version_1_store_merges_with_its_failures(tmp_path):
    source = tmp_path / "v1.sqlite"
    _v1_store(source)
    target = Store(tmp_path / "target.sqlite")
    try:
        assert target.merge_from(source)["response_failures"] == 2
        assert target.merge_from(source)["response_failures"] == 0
        assert {r["outcome"] for r in target.run_rows("old")} == {"error"}
        assert {r["outcome"] for r in target.run_rows("new")} == {"ok"}
    finally:
        target.close()
    with sqlite3.connect(source) as db:  # the source was only read
        assert db.execute("SELECT value FROM meta").fetchone() == ("1",)


def test_a_store_newer_than_the_code_is_one_clear_error(tmp_path):
    path = tmp_path / "future.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(
        UserError, match=r"schema version 99, newer than this modelbench reads \(2\)"
    ) as raised:
        Store(path)
    assert "\n" not in str(raised.value)
    target = Store(tmp_path / "target.sqlite")
    with pytest.raises(UserError, match="schema version 99"):
        target.merge_from(path)
    target.close()


# -- problem 2: resumed runs keep their first start and sum their legs --------------------------
def test_a_resumed_run_keeps_its_first_start_and_sums_its_legs(store):
    assert store.start_run("R", {"leg": 1}) == 1
    store.end_leg("R", "interrupted", 2.5)
    store.finish_run("R", "interrupted", {})
    with store.db:  # as if the first leg had started a while ago
        store.db.execute("UPDATE runs SET started_at = ? WHERE run_id = 'R'", (T0,))
        store.db.execute("UPDATE run_legs SET started_at = ? WHERE run_id = 'R'", (T0,))
    assert store.start_run("R", {"leg": 2}) == 2
    info = store.run_info("R")
    assert info["started_at"] == T0 and info["status"] == "running" and info["config"] == {"leg": 2}
    running = store.run_timing("R")
    assert running["wall_s"] == 2.5 and running["legs"][1]["status"] == "running"
    store.end_leg("R", "finished", 4.25)
    store.finish_run("R", "finished", {"counts": {}})
    timing = store.run_timing("R")
    assert timing["started_at"] == T0 and timing["wall_s"] == 6.75
    assert [(leg["leg"], leg["status"], leg["wall_s"]) for leg in timing["legs"]] == [
        (1, "interrupted", 2.5),
        (2, "finished", 4.25),
    ]
    assert timing["legs"][0]["started_at"] == T0 and timing["legs"][1]["started_at"] > T0
    assert store.run_info("R")["status"] == "finished" and store.run_ids().count("R") == 1
    assert store.run_timing("nope") is None


def test_a_leg_whose_process_died_has_no_wall_time(store):
    store.start_run("R", {})  # killed: the leg is never ended
    store.start_run("R", {})
    store.end_leg("R", "finished", 1.0)
    timing = store.run_timing("R")
    assert timing["wall_s"] == 1.0
    assert [(leg["status"], leg["wall_s"]) for leg in timing["legs"]] == [
        ("running", None),
        ("finished", 1.0),
    ]
