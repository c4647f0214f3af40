"""Grading throughput of the local evaluators on CPU: each member, and the default ensemble.

Prints one table; every number comes from this one run. Usage:

    .venv/bin/python benchmarks/graders.py [--items 1000] [--threads 2] [--target 100]

The exchanges are real model answers: XSTest completions from ../shared/data/xstest (three models,
answers of a few words to a few hundred), shuffled with a fixed seed; without that folder, mb-demo
prompts with synthetic answers of mixed length. Each evaluator grades them in its own batch size
through `judge`, as the engine calls it: `refusal`, `minilm-ce` in float32 (the default) and with
int8 dynamic quantisation of its linear layers, and the previous `minilm-clf`. The default
ensemble's row runs its members concurrently, freshly loaded, as the engine runs its grader
workers. Model loading is timed apart, on other exchanges, since a run pays it once. The last line
says whether the default ensemble reaches the target rate (issue 14 asks for 100 items/s on 2 CPU
cores); the exit status is 0 either way, since the number is what matters.
"""

import argparse
import asyncio
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from modelbench.graders.base import Evaluator, Exchange  # noqa: E402
from modelbench.graders.cross_encoder import CrossEncoderClassifier  # noqa: E402
from modelbench.graders.lab.labels import load_xstest_folder  # noqa: E402
from modelbench.graders.minilm import MiniLMClassifier  # noqa: E402
from modelbench.graders.refusal import RefusalEvaluator  # noqa: E402
from modelbench.graders.registry import DEFAULT_GRADERS, make_evaluator  # noqa: E402

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

    systems: dict[str, Callable[[], Evaluator]] = {
        "refusal": RefusalEvaluator,
        "minilm-ce": CrossEncoderClassifier,
        "minilm-ce int8": lambda: CrossEncoderClassifier(dtype="int8"),
        "minilm-clf (previous)": MiniLMClassifier,
    }
    rows, loads = [], {}
    for name, make in systems.items():
        evaluator = make()
        started = time.perf_counter()
        await evaluator.judge(warm)
        loads[name] = time.perf_counter() - started
        rows.append((name, evaluator.batch_size, await grade(evaluator, items)))
    # The default ensemble as the engine runs it: every member concurrently, each freshly loaded
    # (load time apart), so no cache from the rows above helps.
    members = [make_evaluator(spec) for spec in DEFAULT_GRADERS]
    for member in members:
        await member.judge(warm)
    started = time.perf_counter()
    await asyncio.gather(*(grade(member, items) for member in members))
    default_name = "default: " + " + ".join(DEFAULT_GRADERS)
    rows.append((default_name, None, time.perf_counter() - started))

    table = Table(
        title=(
            f"{len(items)} exchanges: {origin}\n"
            f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; load time apart"
        )
    )
    for column in ("graders", "judge batch", "load s", "wall s", "items/s"):
        table.add_column(column, justify="right")
    for name, batch, wall in rows:
        load = f"{loads[name]:.1f}" if name in loads else "-"
        table.add_row(name, str(batch or "-"), load, f"{wall:.2f}", f"{len(items) / wall:.0f}")
    console = Console()
    console.print(table)
    together = len(items) / rows[-1][2]
    verdict = "reached" if together >= args.target else "NOT reached"
    console.print(f"{default_name}: {together:.0f} items/s; target {args.target:.0f} items/s {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    parser.add_argument("--target", type=float, default=100.0, help="items/s for the default ensemble")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
