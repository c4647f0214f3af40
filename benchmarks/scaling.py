"""Scaling of `--executor ray` with workers, on a local Ray cluster, printed as a table.

    .venv/bin/python benchmarks/scaling.py [--items 240] [--latency-ms 50] [--unit-size 24]
                                           [--workers 1,2] [--cpus 2] [--store-rows 20000]

(a) fixed latency: `modelbench.testing.suts`' SUT sleeps `latency-ms` per item (batch 1), like a
    remote model or a GPU busy elsewhere; the driver's CPU is not what limits it. Throughput with
    1 and 2 workers (actors of the one SUT), the ratio, and the efficiency N-worker / (N x 1-worker).
(b) CPU-bound: the same SUT does a fixed amount of pure-Python work per item (calibrated here to
    `latency-ms` on an idle core), like a model's forward pass on the CPU.
(c) the store: how many (response, verdict) pairs per second the driver writes, `store-unit`
    pairs (256, the default unit size) per commit, as it stores a unit in a run.

Each run is a whole `modelbench run --executor ray` (refusal grader) into an empty store. "fill"
is items over the Ray phase's wall time (planning, starting the worker processes, every unit);
"units" counts from the first unit's start on a worker to the last unit's end ("model loads"
included, process start-up not); "busy" adds up each worker's own rate from its first item to
its last.
"""

import argparse
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import yaml  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from modelbench.cli import main as cli  # noqa: E402
from modelbench.graders import Verdict  # noqa: E402
from modelbench.store import Store  # noqa: E402
from modelbench.suts import SUTResponse  # noqa: E402
from modelbench.testing.suts import iterations_per_ms  # noqa: E402


def run_once(tmp: Path, settings: dict, workers: int, items: int, unit_size: int) -> dict:
    config = tmp / f"suts-{time.time_ns()}.yaml"
    entry = {"adapter": "testing-fixed-latency", "module": "modelbench.testing.suts", **settings}
    config.write_text(yaml.safe_dump({"suts": {"bench": entry}}), "utf-8")
    run_dir = tmp / f"run-{time.time_ns()}"
    args = ["run", "--sut-config", str(config), "--sut", "bench", "--graders", "refusal"]
    args += ["--max-items", str(items), "--run-dir", str(run_dir), "--executor", "ray"]
    args += ["--workers", str(workers), "--unit-size", str(unit_size)]
    result = CliRunner().invoke(cli, args)
    if result.exit_code != 0:
        raise SystemExit(result.output)
    run_id = re.search(r"^run (\S+): ", result.output, re.MULTILINE).group(1)
    import json

    executor = json.loads((run_dir / run_id / "record.json").read_text("utf-8"))["executor"]
    units = executor["units"]
    first = min(u["start_s"] for u in units)
    last = max(u["start_s"] + u["wall_s"] for u in units)
    busy = 0.0
    for worker in {u["worker"] for u in units}:
        mine = [u for u in units if u["worker"] == worker]
        start = min(u["start_s"] + u["build_s"] for u in mine)
        end = max(u["start_s"] + u["wall_s"] for u in mine)
        busy += sum(u["items"] for u in mine) / max(end - start, 1e-9)
    return {
        "fill_rate": sum(u["items"] for u in units) / executor["wall_s"],
        "wall_rate": sum(u["items"] for u in units) / (last - first),
        "busy_rate": busy,
        "workers_used": len({u["worker"] for u in units}),
        "units": len(units),
    }


def store_rate(rows: int, unit_size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "modelbench.sqlite")
        started = time.perf_counter()
        for start in range(0, rows, unit_size):
            n = min(unit_size, rows - start)
            responses = [
                (f"r{start + i}", SUTResponse(sut_uid="s", item_uid=f"i{start + i}", text="answer " * 100))
                for i in range(n)
            ]
            verdicts = [
                (f"v{start + i}", f"r{start + i}", Verdict(evaluator_uid="e", p_unsafe=0.1, raw="p=0.1"))
                for i in range(n)
            ]
            store.put_responses(responses, run_id="bench", commit=False)
            store.put_verdicts(verdicts, commit=False)
            store.commit()
        elapsed = time.perf_counter() - started
        store.close()
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=240)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--unit-size", type=int, default=24)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--store-rows", type=int, default=20_000)
    parser.add_argument("--store-unit", type=int, default=256, help="rows per commit (the default unit size)")
    args = parser.parse_args()
    import ray

    ipm = iterations_per_ms()  # on an idle machine, before Ray starts its processes
    counts = [int(w) for w in args.workers.split(",")]
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    cases = {
        "fixed latency (sleep)": {"latency_ms": args.latency_ms},
        "CPU-bound (pure Python)": {"cpu_iterations": int(args.latency_ms * ipm)},
    }
    title = f"modelbench --executor ray, local cluster of {args.cpus} CPUs on {os.cpu_count()} cores"
    table = Table(title=title)
    for column in ("case", "workers", "items/s (fill)", "(units)", "(busy)", "ratio", "efficiency"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        run_once(Path(tmp), {"latency_ms": 1}, 1, 24, 24)  # warm up: worker processes, imports
        for name, settings in cases.items():
            base = None
            for workers in counts:
                got = run_once(Path(tmp), settings | {"batch_size": 1}, workers, args.items, args.unit_size)
                base = base or got
                ratio = got["fill_rate"] / base["fill_rate"]
                table.add_row(
                    name,
                    f"{workers} ({got['workers_used']} used, {got['units']} units)",
                    f"{got['fill_rate']:.1f}",
                    f"{got['wall_rate']:.1f}",
                    f"{got['busy_rate']:.1f}",
                    f"{ratio:.2f}x",
                    f"{ratio / workers:.0%}",
                )
    ray.shutdown()
    ideal = 1000 / args.latency_ms
    console = Console(width=150)
    console.print(table)
    console.print(
        f"ideal per worker: {ideal:.1f} items/s ({args.latency_ms:g} ms per item, batch 1); "
        "ratio and efficiency from the fill column: N workers / 1, and that / N"
    )
    rate = store_rate(args.store_rows, args.store_unit)
    console.print(
        f"store: {rate:,.0f} (response, verdict) pairs/s written by the driver, "
        f"{args.store_unit} per commit ({args.store_rows:,} pairs)"
    )


if __name__ == "__main__":
    sys.exit(main())
