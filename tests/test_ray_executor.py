"""`--executor ray` on a local Ray cluster (2 CPUs, loopback only, no usage statistics).

The same run stores the same response and verdict keys with either executor; a worker killed
mid-unit is restarted and its unit retried, with no duplicate and nothing lost, and the run again
does nothing; a model loads once per (SUT, worker), not once per unit; Ctrl-C keeps what finished
and `--resume` completes it. The SUTs are `modelbench.testing.suts`' fixed-latency SUT, which
workers import by the `module:` of its registry entry.
"""

import _thread
import asyncio
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from modelbench import Store
from modelbench.cli import main
from modelbench.executors import UnitWorker, plan_units
from modelbench.graders import make_evaluator
from modelbench.scoring import load_ensemble_config
from modelbench.suts import SUTOptions, load_registry, make_sut

ray = pytest.importorskip("ray")

ITEMS = 24


@pytest.fixture(scope="module")
def cluster():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    started = time.perf_counter()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=100 * 1024 * 1024,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    print(f"ray.init: {time.perf_counter() - started:.1f}s")
    yield
    ray.shutdown()


def write_config(path: Path, names: list[str], **settings) -> Path:
    entry = {"adapter": "testing-fixed-latency", "module": "modelbench.testing.suts", **settings}
    path.write_text(yaml.safe_dump({"suts": {name: dict(entry) for name in names}}), "utf-8")
    return path


def run_args(config: Path, run_dir: Path, suts: list[str], *extra: str) -> list[str]:
    args = ["run", "--sut-config", str(config), "--graders", "refusal", "--max-items", str(ITEMS)]
    for sut in suts:
        args += ["--sut", sut]
    return [*args, "--run-dir", str(run_dir), *extra]


def invoke(args: list[str]):
    started = time.perf_counter()
    result = CliRunner(env={"COLUMNS": "250"}).invoke(main, args)
    print(f"{' '.join(args[-4:])}: exit {result.exit_code} in {time.perf_counter() - started:.1f}s")
    return result


def record_of(run_dir: Path, output: str) -> dict:
    run_id = re.search(r"^run (\S+): ", output, re.MULTILINE).group(1)
    return json.loads((run_dir / run_id / "record.json").read_text("utf-8"))


def stored(run_dir: Path) -> dict[str, list]:
    db = sqlite3.connect(f"file:{run_dir / 'modelbench.sqlite'}?mode=ro", uri=True)
    try:
        return {
            "responses": sorted(db.execute("SELECT key, outcome, text FROM responses")),
            "verdicts": sorted(db.execute("SELECT key, response_key, p_unsafe FROM verdicts")),
            "failures": db.execute("SELECT COUNT(*) FROM response_failures").fetchall(),
        }
    finally:
        db.close()


def loads(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines() if path.exists() else []


def test_a_worker_runs_units_through_the_engine_without_ray(tmp_path):
    """The worker's side alone: built once, two units, rows back, nothing written by the worker."""
    config = write_config(tmp_path / "suts.yaml", ["echo"], batch_size=4, loads_file=str(tmp_path / "loads"))
    registry = load_registry(config)
    options = SUTOptions()
    sut = make_sut("echo", options, registry)
    evaluator = make_evaluator("refusal", options, registry)
    from modelbench.prompts import load_prompt_set

    items = load_prompt_set("mb-demo").items[:10]
    store = Store(tmp_path / "modelbench.sqlite")
    plan = plan_units(store, [sut], [evaluator], items, unit_size=6)
    assert [len(u.items) for u in plan.units] == [6, 4]
    assert len(plan.units[0].items[0].text) >= len(plan.units[1].items[-1].text)  # longest first
    ensemble = load_ensemble_config(graders=["refusal"], fingerprints={"refusal": evaluator.fingerprint()})
    fingerprints = {"sut": sut.fingerprint(), "graders": {"refusal": evaluator.fingerprint()}}
    worker = UnitWorker("echo", options, registry, ["refusal"], ensemble, fingerprints)
    results = [asyncio.run(worker.process(unit)) for unit in plan.units]
    assert [r.built for r in results] == [True, False] and not any(r.problem for r in results)
    assert sum(len(r.responses) for r in results) == 10 and sum(len(r.verdicts) for r in results) == 10
    assert len(loads(tmp_path / "loads")) == 1
    assert store.count("responses") == 0  # only the driver writes
    wrong = UnitWorker("echo", options, registry, ["refusal"], ensemble, fingerprints | {"sut": {"x": 1}})
    assert "is not the driver's" in asyncio.run(wrong.process(plan.units[0])).problem


def test_a_default_run_never_imports_ray(tmp_path):
    config = write_config(tmp_path / "suts.yaml", ["echo"])
    script = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from modelbench.cli import main\n"
        f"result = CliRunner().invoke(main, {run_args(config, tmp_path / 'runs', ['echo'])!r})\n"
        "print(json.dumps([result.exit_code, 'ray' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [0, False]


def test_ray_options_go_with_the_ray_executor(tmp_path):
    config = write_config(tmp_path / "suts.yaml", ["echo"])
    result = invoke(run_args(config, tmp_path / "runs", ["echo"], "--workers", "2"))
    assert result.exit_code == 2 and "go with --executor ray" in result.output
    result = invoke(run_args(config, tmp_path / "runs", ["echo"], "--executor", "ray", "--unit-size", "0"))
    assert result.exit_code == 2 and "--unit-size must be at least 1" in result.output


def test_ray_and_local_runs_store_the_same_keys(cluster, tmp_path):
    config = write_config(tmp_path / "suts.yaml", ["echo-a", "echo-b"], latency_ms=5, batch_size=4)
    suts = ["echo-a", "echo-b"]
    local = invoke(run_args(config, tmp_path / "local", suts))
    assert local.exit_code == 0, local.output
    distributed = invoke(run_args(config, tmp_path / "ray", suts, "--executor", "ray", "--unit-size", "5"))
    assert distributed.exit_code == 0, distributed.output
    a, b = stored(tmp_path / "local"), stored(tmp_path / "ray")
    assert len(a["responses"]) == 2 * ITEMS and len(a["verdicts"]) == 2 * ITEMS
    assert a == b  # the same keys, texts and verdicts
    assert "reused 0/48 stored responses and 0/48 stored verdicts" in distributed.output
    record = record_of(tmp_path / "ray", distributed.output)
    local_record = record_of(tmp_path / "local", local.output)
    assert record["counts"] == local_record["counts"]
    assert [s["overall"] for s in record["scores"]] == [s["overall"] for s in local_record["scores"]]
    executor = record["executor"]
    assert executor["name"] == "ray" and executor["cluster_resources"]["CPU"] == 2
    assert executor["units_run"] == 10 and all(u["wall_s"] > 0 for u in executor["units"])
    assert local_record["executor"] == {"name": "local"}
    assert record["suts"]["echo-a"]["responses_new"] == ITEMS


def test_workers_failures_are_this_runs_and_never_retried_on_the_driver(cluster, tmp_path):
    loads_file = tmp_path / "loads.txt"
    config = write_config(tmp_path / "suts.yaml", ["flaky"], fail_every=4, loads_file=str(loads_file))
    local = invoke(run_args(config, tmp_path / "local", ["flaky"]))
    distributed = invoke(
        run_args(config, tmp_path / "ray", ["flaky"], "--executor", "ray", "--unit-size", "8")
    )
    assert local.exit_code == distributed.exit_code == 3, distributed.output  # finished with errors
    record = record_of(tmp_path / "ray", distributed.output)
    local_record = record_of(tmp_path / "local", local.output)
    assert 0 < record["counts"]["response_errors"] == local_record["counts"]["response_errors"]
    assert record["counts"] == local_record["counts"]
    reasons = [(e["stage"], e["source"], e["reason"], e["count"]) for e in record["errors"]]
    assert reasons == [(e["stage"], e["source"], e["reason"], e["count"]) for e in local_record["errors"]]
    assert stored(tmp_path / "local") == stored(tmp_path / "ray")
    pids = [int(line.split()[0]) for line in loads(loads_file)]
    assert pids.count(os.getpid()) == 1  # the local run's load; the Ray run's driver never answered


def test_model_loads_once_per_sut_and_worker_not_per_unit(cluster, tmp_path):
    loads_file = tmp_path / "loads.txt"
    config = write_config(tmp_path / "suts.yaml", ["m1", "m2"], latency_ms=2, loads_file=str(loads_file))
    args = run_args(config, tmp_path / "runs", ["m1", "m2"], "--executor", "ray", "--workers", "2")
    first = invoke([*args, "--unit-size", "3"])
    assert first.exit_code == 0, first.output
    record = record_of(tmp_path / "runs", first.output)
    executor = record["executor"]
    assert executor["units_run"] == 16  # 2 SUTs x 24 items / 3
    # Each unit's answering time as its worker measured it (no grading, no slot wait): the SUT's
    # tokens/s compares with a local run's; the cluster's aggregate is kept apart.
    for unit in executor["units"]:
        assert 0 < unit["generation_s"] <= unit["wall_s"] and unit["tokens_per_s"] > 0
    for uid in ("m1", "m2"):
        per_worker = record["suts"][uid]["tokens_per_s"]
        assert per_worker and executor["aggregate_tokens_per_s"][uid] > 0
    lines = loads(loads_file)
    print(f"units {executor['units_run']}, model loads {len(lines)}: {lines}")
    assert len(lines) == 4 == executor["model_loads"] == executor["actors"]  # 2 SUTs x 2 workers
    assert len({line.split()[0] for line in lines}) == 4  # four worker processes
    again = invoke([*args, "--unit-size", "3"])
    assert again.exit_code == 0, again.output
    assert "reused 48/48 stored responses and 48/48 stored verdicts" in again.output
    assert len(loads(loads_file)) == 4  # nothing left to do: no worker started


def test_a_worker_killed_mid_unit_is_retried_without_duplicates(cluster, tmp_path):
    loads_file, marker = tmp_path / "loads.txt", tmp_path / "crashed"
    config = write_config(
        tmp_path / "suts.yaml",
        ["fragile"],
        latency_ms=20,
        loads_file=str(loads_file),
        crash_marker=str(marker),
        crash_on_call=3,  # the third item of its first unit: mid-unit
    )
    args = run_args(config, tmp_path / "runs", ["fragile"], "--executor", "ray", "--unit-size", "6")
    first = invoke(args)
    assert first.exit_code == 0, first.output
    assert marker.exists()  # a worker did die
    rows = stored(tmp_path / "runs")
    keys = [r[0] for r in rows["responses"]]
    assert len(keys) == len(set(keys)) == ITEMS and len(rows["verdicts"]) == ITEMS
    assert rows["failures"] == [(0,)]
    executor = record_of(tmp_path / "runs", first.output)["executor"]
    assert executor["units_run"] == 4 and sorted(u["unit"] for u in executor["units"]) == [0, 1, 2, 3]
    assert len(loads(loads_file)) == 3  # two workers, and the one that died loaded again
    again = invoke(args)
    assert again.exit_code == 0, again.output
    assert "reused 24/24 stored responses and 24/24 stored verdicts" in again.output
    assert stored(tmp_path / "runs") == rows and len(loads(loads_file)) == 3


def test_ctrl_c_keeps_finished_units_and_resume_completes(cluster, tmp_path):
    config = write_config(tmp_path / "suts.yaml", ["slow"], latency_ms=100)
    run_dir = tmp_path / "runs"
    store_path = run_dir / "modelbench.sqlite"

    def interrupt_when_some_are_stored() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
                n = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
                db.close()
                if n >= 4:
                    _thread.interrupt_main()
                    return
            except sqlite3.Error:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=interrupt_when_some_are_stored, daemon=True)
    watcher.start()
    first = invoke(run_args(config, run_dir, ["slow"], "--executor", "ray", "--unit-size", "2"))
    watcher.join()
    assert first.exit_code == 130, first.output
    assert "--executor ray" in first.output
    run_id = re.search(r"--resume (\S+)", first.output).group(1)
    done = len(stored(run_dir)["responses"])
    assert 4 <= done < ITEMS
    resumed = invoke(["run", "--resume", run_id, "--run-dir", str(run_dir), "--executor", "ray"])
    assert resumed.exit_code == 0, resumed.output
    assert f"reused {done}/{ITEMS} stored responses" in resumed.output
    assert len(stored(run_dir)["responses"]) == ITEMS
    legs = record_of(run_dir, resumed.output)["timing"]["legs"]
    assert [leg["status"] for leg in legs] == ["interrupted", "finished"]


def test_worker_slots_are_sized_per_node_and_follow_what_uses_the_device():
    """No cluster needed: the placement rules, on a described cluster."""
    from types import SimpleNamespace

    from modelbench.executors import RayExecutor

    executor = RayExecutor(workers=3, unit_size=64)
    nodes = [
        {"Alive": True, "Resources": {"CPU": 32.0}},  # a CPU-rich head without GPUs
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": True, "Resources": {"CPU": 17.0, "GPU": 2.0}},
        {"Alive": False, "Resources": {"CPU": 2.0, "GPU": 1.0}},  # gone: not counted
    ]
    executor._ray = SimpleNamespace(nodes=lambda: nodes)
    executor.resources = {"CPU": 57.0, "GPU": 3.0}
    assert executor._cpus_per_gpu() == 7  # what the 8-CPU, 1-GPU node can give, not (57 - 1) // 3
    api = SimpleNamespace(can=lambda capability: False)
    local = SimpleNamespace(can=lambda capability: capability == "accelerator")
    on_cpu, on_device = SimpleNamespace(device_bound=False), SimpleNamespace(device_bound=True)
    assert executor._kind(local, [on_cpu]) == "GPU"
    assert executor._kind(api, [on_cpu]) == "CPU"
    assert executor._kind(api, [on_cpu, on_device]) == "GPU"  # a local judge beside an API SUT
    executor.resources = {"CPU": 2.0}
    assert executor._kind(local, [on_device]) == "CPU"  # no GPUs: everything on CPUs
    assert executor.resume_flags == " --executor ray --workers 3 --unit-size 64"


def test_a_worker_ray_cannot_place_stops_the_run_with_one_line(cluster, tmp_path, monkeypatch):
    from modelbench.executors import RayExecutor

    # A worker that asks for a resource no node has: Ray would wait for it forever.
    monkeypatch.setattr(
        RayExecutor, "_resources_for", lambda self, kind: {"num_cpus": 1, "resources": {"tpu": 1}}
    )
    config = write_config(tmp_path / "suts.yaml", ["slow"], latency_s=0.01)
    started = time.perf_counter()
    result = invoke(run_args(config, tmp_path, ["slow"], "--executor", "ray", "--placement-timeout", "2"))
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "Ray could not place a worker for slow within 2s" in text and "'tpu': 1" in text
    assert "Traceback" not in result.output and time.perf_counter() - started < 30
