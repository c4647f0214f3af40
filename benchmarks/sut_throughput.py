"""HuggingFace SUT throughput against batch size, on the embedded SmolLM2-135M-Instruct (CPU).

Prints one table; every ratio comes from this one run. Usage:

    .venv/bin/python benchmarks/sut_throughput.py [--batches 1,8,32] [--max-new-tokens 64] [--items 32]

Each row generates for the same items (the first N of mb-demo, sorted by length like the engine
does), through the adapter's real path (chat template, left padding, greedy generate, decode).
Aggregate tokens/s counts completion tokens up to each item's end-of-sequence.
"""

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from modelbench.prompts import load_prompt_set  # noqa: E402
from modelbench.suts import SUTOptions, make_sut  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sut", default="smollm2-135m")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    items = sorted(load_prompt_set("mb-demo").items[: args.items], key=lambda i: len(i.text), reverse=True)
    sut = make_sut(args.sut, SUTOptions(max_new_tokens=args.max_new_tokens, device=args.device))
    started = time.perf_counter()
    sut.respond_sync(items[:1])  # type: ignore[attr-defined]  # load and warm up
    load_s = time.perf_counter() - started

    table = Table(
        title=f"{args.sut}: {len(items)} items, {args.max_new_tokens} new tokens, load {load_s:.1f}s"
    )
    for column in ("batch", "wall s", "completion tokens", "tokens/s", "x batch 1"):
        table.add_column(column, justify="right")
    base: float | None = None
    for batch in batches:
        tokens = 0
        started = time.perf_counter()
        for start in range(0, len(items), batch):
            responses = sut.respond_sync(items[start : start + batch])  # type: ignore[attr-defined]
            tokens += sum(r.completion_tokens or 0 for r in responses)
        wall = time.perf_counter() - started
        rate = tokens / wall
        base = base or rate
        table.add_row(str(batch), f"{wall:.1f}", str(tokens), f"{rate:.1f}", f"{rate / base:.1f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
