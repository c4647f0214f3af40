"""Grading throughput of the local evaluators on CPU: each member, and the default ensemble.

Prints one table; every number comes from this one run. Usage:

    .venv/bin/python benchmarks/graders.py [--items 1000] [--threads 2] [--target 100]

The exchanges are real model answers: XSTest completions from ../shared/data/xstest (three models,
answers of a few words to a few hundred), shuffled with a fixed seed; without that folder, mb-demo
prompts with synthetic answers of mixed length. Each evaluator grades them in its own batch size
through `judge`, as the engine calls it, in turns of a tenth of the exchanges each (`--chunks`), so
that a machine whose load changes during the run slows every row alike: `refusal`; `minilm-ce` on
ONNX Runtime with int8 weights (the default), on ONNX Runtime in float32, and on torch in float32
(the reference its card was measured with) and with torch's int8 dynamic quantisation; and the
previous `minilm-clf`. Torch and ONNX Runtime get the same threads (`--threads`). The default
ensemble's row runs its members concurrently, freshly loaded, as the engine runs its grader
workers. Model loading is timed apart, on other exchanges, since a run pays it once; an ONNX file
is built (and cached) before its load is timed, and the build is reported apart.

After the table: the default minilm-ce's speed over torch float32's in this run, on these
exchanges (issue 23 asks for 3.7x), and how far their verdicts agree: the share of the same
unsafe/safe decisions, the largest difference of verdict p, and, on XSTest, F1 against its labels.
The last line says whether the default ensemble reaches the target rate (issue 14 asks for 100
items/s on 2 CPU cores); the exit status is 0 either way, since the numbers are what matter.
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

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from modelbench.graders import DEFAULT_GRADERS, make_evaluator  # noqa: E402
from modelbench.graders.base import Evaluator, Exchange, Verdict  # noqa: E402
from modelbench.graders.cross_encoder import CrossEncoderClassifier  # noqa: E402
from modelbench.graders.lab.labels import load_xstest_folder  # noqa: E402
from modelbench.graders.minilm import MiniLMClassifier  # noqa: E402
from modelbench.graders.refusal import RefusalEvaluator  # noqa: E402

XSTEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest"
ANSWERS = [
    "I'm sorry, but I can't help with that.",
    "Sure. Here is an overview of the main steps, with the caveats you should know about. ",
    "That depends on where you live; the rules differ, and a professional can tell you more. ",
]


def exchanges(n: int, seed: int = 0) -> tuple[list[Exchange], list[bool] | None, str]:
    """(exchanges, their unsafe labels when known, where they come from)."""
    if XSTEST.is_dir():
        rows = load_xstest_folder(XSTEST)
        random.Random(seed).shuffle(rows)
        rows = (rows * (n // len(rows) + 2))[: n + 16]
        return [r.exchange() for r in rows], [r.unsafe for r in rows], f"XSTest completions ({XSTEST})"
    from modelbench.prompts import load_prompt_set

    items = load_prompt_set("mb-demo").items
    rng = random.Random(seed)
    made = [
        Exchange(item=items[i % len(items)], response=rng.choice(ANSWERS) * rng.randint(1, 12))
        for i in range(n + 16)
    ]
    return made, None, "mb-demo prompts with synthetic answers"


async def grade(evaluator: Evaluator, batch: list[Exchange]) -> tuple[float, list[Verdict]]:
    started = time.perf_counter()
    verdicts: list[Verdict] = []
    for start in range(0, len(batch), evaluator.batch_size):
        verdicts += await evaluator.judge(batch[start : start + evaluator.batch_size])
        assert all(v.valid for v in verdicts)
    return time.perf_counter() - started, verdicts


def f1(unsafe: np.ndarray, labels: np.ndarray) -> float:
    tp, fp, fn = np.sum(unsafe & labels), np.sum(unsafe & ~labels), np.sum(~unsafe & labels)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 1.0


def agreement(
    console: Console, verdicts: dict[str, list[Verdict]], reference: str, labels: list[bool] | None
) -> None:
    """Each minilm-ce path's verdicts against the torch float32 reference's, on the same exchanges."""
    p_ref = np.array([v.p_unsafe for v in verdicts[reference]])
    truth = np.array(labels, dtype=bool) if labels is not None else None
    for name, got in verdicts.items():
        if not name.startswith("minilm-ce"):
            continue
        p = np.array([v.p_unsafe for v in got])
        line = (
            f"{name}: same decision as {reference} on {np.mean((p >= 0.5) == (p_ref >= 0.5)):.2%} "
            f"({int(np.sum((p >= 0.5) != (p_ref >= 0.5)))} differ), max |verdict p difference| "
            f"{np.max(np.abs(p - p_ref)):.4f}"
        )
        if truth is not None:
            line += f", F1 on the XSTest labels {f1(p >= 0.5, truth):.4f}"
            line += f" (reference {f1(p_ref >= 0.5, truth):.4f})"
        console.print(line)


async def run(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    pool, all_labels, origin = exchanges(args.items)
    warm, items = pool[:16], pool[16 : 16 + args.items]
    labels = all_labels[16 : 16 + args.items] if all_labels is not None else None

    reference, default = "minilm-ce@float32 (torch)", "minilm-ce (onnx int8, default)"
    systems: dict[str, Callable[[], Evaluator]] = {
        "refusal": RefusalEvaluator,
        reference: lambda: CrossEncoderClassifier(dtype="float32"),
        default: CrossEncoderClassifier,
        "minilm-ce@int8 (torch)": lambda: CrossEncoderClassifier(dtype="int8"),
        "minilm-ce@onnx-float32": lambda: CrossEncoderClassifier(dtype="onnx-float32"),
        "minilm-clf (previous)": MiniLMClassifier,
    }
    console = Console()
    for name in (default, "minilm-ce@onnx-float32"):  # build (or find) the ONNX files first
        built = systems[name]()
        started = time.perf_counter()
        built.load()
        net = built._net  # an OnnxNet: where its file came from
        how = f"built in {net.info.build_seconds:.1f}s" if net.built_now else "found in the cache"
        console.print(
            f"{name}: ONNX file {net.path.name} {how} ({time.perf_counter() - started:.1f}s), "
            f"sha256 {net.info.sha256[:12]}, fusions {net.info.fusions}"
        )
    evaluators, loads = {}, {}
    for name, make in systems.items():
        evaluators[name] = make()
        started = time.perf_counter()
        await evaluators[name].judge(warm)
        loads[name] = time.perf_counter() - started
    # Round robin: every evaluator grades one chunk, then the next chunk, the order turning each
    # time. On a machine whose load changes during the run (a shared one), every row then meets
    # the same load, and the ratios between rows hold even where the absolute rates do not.
    walls = dict.fromkeys(systems, 0.0)
    verdicts: dict[str, list[Verdict]] = {name: [] for name in systems}
    size = -(-len(items) // max(1, args.chunks))
    for turn, start in enumerate(range(0, len(items), size)):
        names = list(systems)
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            wall, got = await grade(evaluators[name], items[start : start + size])
            walls[name] += wall
            verdicts[name] += got
    rows = [(name, evaluators[name].batch_size, walls[name]) for name in systems]
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
            f"torch threads {torch.get_num_threads()} (ONNX Runtime the same), {os.cpu_count()} CPUs; "
            "load time apart"
        )
    )
    for column in ("graders", "judge batch", "load s", "wall s", "items/s"):
        table.add_column(column, justify="right")
    for name, batch, wall in rows:
        load = f"{loads[name]:.1f}" if name in loads else "-"
        table.add_row(name, str(batch or "-"), load, f"{wall:.2f}", f"{len(items) / wall:.0f}")
    console.print(table)
    ratio = walls[reference] / walls[default]
    console.print(
        f"{default}: {len(items) / walls[default]:.1f} items/s, {ratio:.2f}x {reference} "
        f"({len(items) / walls[reference]:.1f} items/s) on the same exchanges; "
        f"target {args.ratio_target:.1f}x {'reached' if ratio >= args.ratio_target else 'NOT reached'}"
    )
    agreement(console, verdicts, reference, labels)
    together = len(items) / rows[-1][2]
    verdict = "reached" if together >= args.target else "NOT reached"
    console.print(f"{default_name}: {together:.0f} items/s; target {args.target:.0f} items/s {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    parser.add_argument("--target", type=float, default=100.0, help="items/s for the default ensemble")
    parser.add_argument("--chunks", type=int, default=10, help="round-robin turns over the exchanges")
    parser.add_argument(
        "--ratio-target", type=float, default=3.7, help="default minilm-ce's speed over torch float32's"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
