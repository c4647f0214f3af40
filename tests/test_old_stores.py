"""Stores and run records written by an earlier version still open, report, export and take new runs.

`tests/fixtures/store_v0.1.0` was written by modelbench 0.1.0 (its README says how); every test
works on a copy, so the fixture itself is never changed.
"""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelbench import STORE_NAME, Store
from modelbench.cli import main
from modelbench.reports import RunRecord, load_record
from modelbench.testing import MockServer, ServerState

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


# -- the record's typed sections (record version 4) read records written before them -------------
RECORD_V3 = Path(__file__).parent / "fixtures" / "record_v3" / "record.json"


def _kept(raw, again, where="record"):
    """Every key and value of `raw` is in `again` (which may add fields with their defaults)."""
    if isinstance(raw, dict):
        assert isinstance(again, dict), where
        for key, value in raw.items():
            assert key in again, f"{where}.{key} lost"
            _kept(value, again[key], f"{where}.{key}")
    elif isinstance(raw, list):
        assert isinstance(again, list) and len(again) == len(raw), where
        for i, (a, b) in enumerate(zip(raw, again, strict=True)):
            _kept(a, b, f"{where}[{i}]")
    else:
        assert raw == again, f"{where}: {raw!r} became {again!r}"


def test_a_version_3_record_loads_into_the_typed_sections():
    from modelbench.reports import RECORD_VERSION, LocalExecution, RunConfig, RunCounts, RunTiming, SUTSummary

    raw = json.loads(RECORD_V3.read_text())
    assert raw["record_version"] == 3 < RECORD_VERSION
    record = RunRecord.model_validate(raw)
    config = record.config
    assert isinstance(config, RunConfig)
    asked, benign = config.prompt_set, config.over_refusal
    assert (asked.name, asked.n_items, asked.max_items, asked.seed) == ("mb-demo", 12, 12, 3)
    assert asked.shard is None
    assert benign is not None and (benign.name, benign.n_items) == ("mb-benign", 22)
    assert [(a.attack, a.spec, a.version) for a in config.attacks] == [("base64", "base64", 1)]
    assert config.n_attacked_items == 12 and list(config.graders) == ["refusal"]
    assert config.request.grade_on == "corrected" and config.request.min_items == 3
    assert config.request.model_extra["attacks"] == ["base64"]  # the rest of the request, kept
    assert config.error_rates is None and config.ensemble.threshold == 0.5
    assert config.standard.name == "ailuminate-1.0-practice" and config.answer_quality is not None
    assert isinstance(record.counts, RunCounts)
    assert (record.counts.items, record.counts.benign_items, record.counts.attacked_items) == (12, 22, 12)
    assert isinstance(record.timing, RunTiming) and record.timing.wall_s == raw["timing"]["wall_s"]
    assert [leg.status for leg in record.timing.legs] == ["finished"]
    (uid,) = raw["suts"]
    summary = record.sut(uid)
    assert isinstance(summary, SUTSummary) and summary.responses_new == 46 and summary.metadata["uid"] == uid
    assert summary.tokens_per_s == raw["suts"][uid]["tokens_per_s"]
    assert isinstance(record.executor, LocalExecution)
    # Written back, it is the record it was: every section typed, no key or value lost or added.
    assert record.model_dump(mode="json") == raw
    assert RunRecord.model_validate_json(record.model_dump_json()) == record


def test_a_version_2_record_from_the_old_store_loads_into_the_typed_sections(old):
    from modelbench.reports import ExecutorSection, as_run_config

    for run_id in RUNS:
        raw = json.loads((old / run_id / "record.json").read_text())
        record = RunRecord.model_validate(raw)
        assert record.record_version == 2
        assert record.config.request.min_items == 3 and record.config.prompt_set.seed == 3
        assert record.config.over_refusal is None and record.config.attacks == []  # before both existed
        assert record.counts.items == 48 and record.counts.benign_items == 0
        assert record.counts.model_fields_set == set(raw["counts"])  # what the record itself said
        assert record.timing.legs[0].leg == 1 and record.sut(next(iter(raw["suts"]))).outcomes_new
        # Written before executors were recorded: no name, rather than a guessed one.
        assert type(record.executor) is ExecutorSection and record.executor.name == ""
        _kept(raw, record.model_dump(mode="json"))
        # The store's copy of the run's configuration reads the same way (what `compare` reads).
        store = Store(old / STORE_NAME)
        try:
            stored = as_run_config(store.run_info(run_id)["config"])
        finally:
            store.close()
        assert stored.graders == record.config.graders and stored.request.grade_on == "corrected"


def test_executor_sections_keep_what_they_do_not_know():
    from modelbench.reports import ExecutorSection, LocalExecution, RayExecution

    def executor(section: dict) -> object:
        return RunRecord.model_validate({"run_id": "r", "executor": section}).executor

    assert executor({"name": "local"}) == LocalExecution()
    ray = executor({"name": "ray", "units_run": 2, "units": [{"unit": 0, "wall_s": 1.5}], "new": 1})
    assert isinstance(ray, RayExecution) and ray.units_run == 2 and ray.units[0].wall_s == 1.5
    assert ray.model_dump()["new"] == 1
    other = executor({"name": "dask", "workers": 4})
    assert type(other) is ExecutorSection and other.model_dump() == {"name": "dask", "workers": 4}
