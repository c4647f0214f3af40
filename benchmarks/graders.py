"""Grading throughput of the local evaluators, refusal + minilm-clf, on CPU.

Prints one table; every number comes from this one run. Usage:

    .venv/bin/python benchmarks/graders.py [--items 1000] [--threads 2] [--head FILE] [--target 200]

The exchanges are real model answers: XSTest completions from ../shared/data/xstest (three models,
answers of a few words to a few hundred), shuffled with a fixed seed; without that folder, mb-demo
prompts with synthetic answers of mixed length. Each evaluator grades them in its own batch size
through `judge`, as the engine calls it; "together" is the two run concurrently, as the engine runs
its grader workers, on a fresh minilm-clf (so no cached prompt embedding helps). Model loading is
timed apart, on other exchanges, since a run pays it once. The last line says whether the two
together reach the target rate (the issue asks for 200 items/s on 2 CPU cores); the exit status is
0 either way, since the number is what matters.
"""

import argparse
import asyncio
import os
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from modelbench.graders.base import Evaluator, Exchange  # noqa: E402
from modelbench.graders.labels import load_xstest_folder  # noqa: E402
from modelbench.graders.minilm import MiniLMClassifier  # noqa: E402
from modelbench.graders.refusal import RefusalEvaluator  # noqa: E402

XSTEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest"
ANSWERS = [
    "I'm sorry, but I can't help with that.",
    "Sure. Here is an overview of the main steps, with the caveats you should know about. ",
    "That depends on where you live; the rules differ, and a professional can tell you more. ",
]


def exchanges(n: int, seed: int = 0) -> tuple[list[Exchange], str]:
    if XSTEST.is_dir():
        rows = load_xstest_folder(XSTEST)
        random.Random(seed).shuffle(rows)
        rows = (rows * (n // len(rows) + 2))[: n + 16]
        return [r.exchange() for r in rows], f"XSTest completions ({XSTEST})"
    from modelbench.prompts import load_prompt_set

    items = load_prompt_set("mb-demo").items
    rng = random.Random(seed)
    made = [
        Exchange(item=items[i % len(items)], response=rng.choice(ANSWERS) * rng.randint(1, 12))
        for i in range(n + 16)
    ]
    return made, "mb-demo prompts with synthetic answers"


async def grade(evaluator: Evaluator, batch: list[Exchange]) -> float:
    started = time.perf_counter()
    for start in range(0, len(batch), evaluator.batch_size):
        verdicts = await evaluator.judge(batch[start : start + evaluator.batch_size])
        assert all(v.valid for v in verdicts)
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pool, origin = exchanges(args.items)
    warm, items = pool[:16], pool[16 : 16 + args.items]

    refusal = RefusalEvaluator()
    minilm = MiniLMClassifier(head_path=args.head)
    started = time.perf_counter()
    await minilm.judge(warm)
    load_s = time.perf_counter() - started

    rows = [
        ("refusal", refusal.batch_size, await grade(refusal, items)),
        ("minilm-clf", minilm.batch_size, await grade(minilm, items)),
    ]
    fresh = MiniLMClassifier(head_path=args.head)
    await fresh.judge(warm)
    started = time.perf_counter()
    await asyncio.gather(grade(refusal, items), grade(fresh, items))
    rows.append(("refusal + minilm-clf", None, time.perf_counter() - started))

    fingerprint = minilm.fingerprint()
    table = Table(
        title=(
            f"{len(items)} exchanges: {origin}\n"
            f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; minilm-clf "
            f"{fingerprint['dtype']}, max_length {fingerprint['max_length']}, load {load_s:.1f}s"
        )
    )
    for column in ("graders", "judge batch", "wall s", "items/s"):
        table.add_column(column, justify="right")
    for name, batch, wall in rows:
        table.add_row(name, str(batch or "-"), f"{wall:.2f}", f"{len(items) / wall:.0f}")
    console = Console()
    console.print(table)
    together = len(items) / rows[-1][2]
    verdict = "reached" if together >= args.target else "NOT reached"
    console.print(f"refusal + minilm-clf: {together:.0f} items/s; target {args.target:.0f} items/s {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    parser.add_argument("--head", type=Path, default=None, help="another minilm-clf head file")
    parser.add_argument("--target", type=float, default=200.0, help="items/s for refusal + minilm-clf")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
