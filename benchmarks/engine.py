"""Engine benchmarks, side by side in one run, printed as a table.

    .venv/bin/python benchmarks/engine.py [--prompts 2000] [--concurrency 64] [--latency 0.1]
                                          [--rss 10000,100000] [--skip-rss]

(a) harness efficiency: our engine (API SUT + refusal grader + SQLite store) on N prompts against
    the mock OpenAI-compatible server (own process, fixed latency); achieved requests/s over the
    ideal concurrency / latency.
(b) the same workload through a fixed 32-thread pool with the synchronous openai client, answer
    then grade inline, as ModelBench's pipeline does: the ratio of (a) to (b).
(c) a cached re-run of a finished 1,200-item run through the CLI, wall time including startup.
(d) peak RSS of an engine run at 10,000 and 100,000 items (an instant in-process SUT, so that
    the engine and store are what is measured), in a fresh process each.
(e) fixed costs, whole processes: `modelbench run` (refusal grader, fresh run folder, its record
    and report included) against the frozen bare client `benchmarks/bare_client.py` (the openai
    SDK, a semaphore, nothing stored), alternated --whole-runs times on the same prompts and
    server; the median of bare time / modelbench time, and the run's own answering time over the
    ideal (prompts / concurrency x latency). (e') in the same alternations, the frozen
    `benchmarks/bare_aiohttp.py` (a hand-written aiohttp loop, no SDK): the floor the network and
    the server allow, against which modelbench's whole process shows what the harness costs.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _server import mock_server_process  # noqa: E402

from modelbench.engine import Engine  # noqa: E402
from modelbench.graders.base import Exchange  # noqa: E402
from modelbench.graders.refusal import RefusalEvaluator, assess  # noqa: E402
from modelbench.prompts import TestItem, load_prompt_set  # noqa: E402
from modelbench.prompts.export import write_items  # noqa: E402
from modelbench.scoring.ensemble import EnsembleConfig  # noqa: E402
from modelbench.store import Store  # noqa: E402
from modelbench.suts import SUTOptions, make_sut  # noqa: E402


def items_n(n: int) -> list[TestItem]:
    base = load_prompt_set("mb-full").items
    out = []
    for i in range(n):
        item = base[i % len(base)]
        if i >= len(base):
            item = item.model_copy(update={"uid": f"{item.uid}-{i}", "text": f"{item.text} (variant {i})"})
        out.append(item)
    return out


def engine_run(url: str, items: list[TestItem], concurrency: int) -> float:
    sut = make_sut(f"openai-compat:mock@{url}", SUTOptions(concurrency=concurrency))
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.sqlite")
        engine = Engine(store, [sut], [RefusalEvaluator()], EnsembleConfig(), "bench")
        started = time.perf_counter()
        outcome = asyncio.run(engine.run(items))
        elapsed = time.perf_counter() - started
        store.close()
    assert outcome.sut_stats[sut.uid].response_errors == 0
    return elapsed


def thread_pool_run(url: str, items: list[TestItem], threads: int = 32) -> float:
    """ModelBench-style baseline: a fixed pool, each thread calls then grades its item."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0)

    def one(item: TestItem) -> float:
        reply = client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": item.text}], max_tokens=128
        )
        return assess(Exchange(item=item, response=reply.choices[0].message.content or ""))[0]

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, items))
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


def cached_rerun(url: str) -> tuple[float, float]:
    items = items_n(1200)
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.csv"
        write_items(items, prompts)
        command = [
            sys.executable, "-m", "modelbench.cli", "run", "--sut", f"openai-compat:mock@{url}",
            "--prompt-set", str(prompts), "--run-dir", str(Path(tmp) / "runs"), "--concurrency", "64",
        ]  # fmt: skip
        env = {**os.environ, "COLUMNS": "120"}
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        first = time.perf_counter() - started
        started = time.perf_counter()
        result = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        second = time.perf_counter() - started
        assert "reused 1200/1200 stored responses" in result.stdout, result.stdout
    return first, second


def whole_processes(url: str, items: list[TestItem], concurrency: int, runs: int) -> dict:
    """(e): bare client and `modelbench run` alternated, each a fresh process on the same prompts."""
    bare_script = Path(__file__).with_name("bare_client.py")
    floor_script = Path(__file__).with_name("bare_aiohttp.py")
    bare, floor, ours, answering = [], [], [], []
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.jsonl"
        write_items(items, prompts)
        for i in range(runs):
            for script, times in ((bare_script, bare), (floor_script, floor)):
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, str(script), url, str(prompts), str(concurrency)],
                    check=True, capture_output=True,
                )  # fmt: skip
                times.append(time.perf_counter() - started)
            run_dir = Path(tmp) / f"runs-{i}"
            command = [
                sys.executable, "-m", "modelbench.cli", "run", "--sut", f"openai-compat:mock@{url}",
                "--prompt-set", str(prompts), "--graders", "refusal", "--concurrency", str(concurrency),
                "--run-dir", str(run_dir),
            ]  # fmt: skip
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            ours.append(time.perf_counter() - started)
            (record,) = run_dir.glob("*/record.json")
            suts = json.loads(record.read_text())["suts"]
            answering.append(max(s["generation_s"] for s in suts.values()))
    ratios = sorted(b / o for b, o in zip(bare, ours, strict=True))
    floor_ratios = sorted(f / o for f, o in zip(floor, ours, strict=True))
    return {
        "bare": bare,
        "floor": floor,
        "ours": ours,
        "ratios": ratios,
        "floor_ratios": floor_ratios,
        "answering": answering,
    }


RSS_CHILD = r"""
import asyncio, json, resource, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from engine import items_n
from modelbench.engine import Engine
from modelbench.scoring.ensemble import EnsembleConfig
from modelbench.graders.refusal import RefusalEvaluator
from modelbench.store import Store
from modelbench.suts.base import SUT, SUTResponse

class Instant(SUT):
    uid = "instant"
    batch_size = 256
    def fingerprint(self):
        return {"adapter": "instant"}
    def build_request(self, items):
        return None
    async def call(self, request):
        return None
    def parse_response(self, items, native):
        return [SUTResponse(sut_uid=self.uid, item_uid=i.uid, text="I can't help with that.") for i in items]

n = int(sys.argv[1])
items = items_n(n)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with tempfile.TemporaryDirectory() as tmp:
    store = Store(Path(tmp) / "s.sqlite")
    started = time.perf_counter()
    asyncio.run(Engine(store, [Instant()], [RefusalEvaluator()], EnsembleConfig(), "rss").run(items))
    elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"items_rss_mb": base / 1024, "peak_rss_mb": peak / 1024, "seconds": elapsed}))
"""


def peak_rss(n: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(n), str(Path(__file__).parent)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--rss", default="10000,100000")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--whole-runs", type=int, default=5, help="(e): alternations; 0 skips it")
    parser.add_argument("--only-whole", action="store_true", help="run (e) alone")
    args = parser.parse_args()
    items = items_n(args.prompts)
    ideal = args.concurrency / args.latency
    table = Table(title="modelbench engine benchmarks (one run, one machine)")
    for column in ("measure", "value", "note"):
        table.add_column(column)
    if args.whole_runs:
        with mock_server_process(latency_s=args.latency) as url:
            whole = whole_processes(url, items, args.concurrency, args.whole_runs)
        ideal_s = args.prompts / ideal
        median = statistics.median(whole["ratios"])
        table.add_row(
            f"(e) bare client / modelbench, whole processes, {args.whole_runs} alternations",
            f"{median:.2f}",
            f"ratios {', '.join(f'{r:.2f}' for r in whole['ratios'])} (target >= 1.1); "
            f"bare {min(whole['bare']):.2f}-{max(whole['bare']):.2f} s, "
            f"modelbench {min(whole['ours']):.2f}-{max(whole['ours']):.2f} s; answering "
            f"{statistics.median(whole['answering']) / ideal_s:.2f}x the ideal {ideal_s:.2f} s "
            "(target <= 1.3x)",
        )
        table.add_row(
            "(e') bare aiohttp / modelbench, the same alternations",
            f"{statistics.median(whole['floor_ratios']):.2f}",
            f"ratios {', '.join(f'{r:.2f}' for r in whole['floor_ratios'])}; bare aiohttp "
            f"{min(whole['floor']):.2f}-{max(whole['floor']):.2f} s, the floor of a hand-written loop "
            "(bare_aiohttp.py): modelbench's whole process takes 1 / ratio times as long",
        )
    if args.only_whole:
        Console().print(table)
        return
    with mock_server_process(latency_s=args.latency) as url:
        engine_run(url, items[:128], args.concurrency)  # warm up
        ours = args.prompts / engine_run(url, items, args.concurrency)
        pool = args.prompts / thread_pool_run(url, items)
    table.add_row(
        "(a) engine req/s", f"{ours:.1f}", f"ideal {ideal:.0f}/s: efficiency {ours / ideal:.0%} (target 90%)"
    )
    table.add_row("(b) 32-thread pool req/s", f"{pool:.1f}", f"engine / pool = {ours / pool:.2f}x")
    with mock_server_process(latency_s=0.0) as url:
        first, second = cached_rerun(url)
    table.add_row(
        "(c) cached re-run, 1,200 items", f"{second:.2f} s", f"first run {first:.1f} s (target < 3 s)"
    )
    if not args.skip_rss:
        for n in (int(x) for x in args.rss.split(",")):
            rss = peak_rss(n)
            table.add_row(
                f"(d) peak RSS at {n:,} items",
                f"{rss['peak_rss_mb']:.0f} MB",
                f"{rss['items_rss_mb']:.0f} MB after loading items; engine run {rss['seconds']:.1f} s",
            )
    Console().print(table)
    print(f"machine: {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
