"""SUT adapter throughput, printed as tables; every ratio comes from one run.

    .venv/bin/python benchmarks/sut_throughput.py hf  [--batches 1,8,32] [--max-new-tokens 64] [--items 32]
    .venv/bin/python benchmarks/sut_throughput.py api [--concurrency 1,16,64] [--requests 640] [--latency 0.1]

hf: the HuggingFace adapter on the embedded SmolLM2-135M-Instruct, tokens/s against batch size.
Each row generates for the same items (the first N of mb-demo, sorted by length like the engine
does) through the adapter's real path (chat template, left padding, greedy generate, decode).

api: requests/s against concurrency, for the bare openai.AsyncOpenAI client and for our adapter,
against the mock server in its own process with a fixed latency. Efficiency is achieved /
ideal, where ideal = concurrency / latency.
"""

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from modelbench.prompts import load_prompt_set  # noqa: E402
from modelbench.suts import SUTOptions, make_sut  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _server import mock_server_process  # noqa: E402


def answer(sut, items):
    """A SUT's answers through its one public door, `respond` (the three steps, locked)."""
    return asyncio.run(sut.respond(items))


def hf(args: argparse.Namespace) -> None:
    batches = [int(b) for b in args.batches.split(",")]
    items = sorted(load_prompt_set("mb-demo").items[: args.items], key=lambda i: len(i.text), reverse=True)
    sut = make_sut(args.sut, SUTOptions(max_new_tokens=args.max_new_tokens, device=args.device))
    started = time.perf_counter()
    answer(sut, items[:1])  # load and warm up
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
            responses = answer(sut, items[start : start + batch])
            tokens += sum(r.completion_tokens or 0 for r in responses)
        wall = time.perf_counter() - started
        rate = tokens / wall
        base = base or rate
        table.add_row(str(batch), f"{wall:.1f}", str(tokens), f"{rate:.1f}", f"{rate / base:.1f}x")
    Console().print(table)


async def _bare_client(url: str, n: int, concurrency: int) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0)
    semaphore = asyncio.Semaphore(concurrency)
    prompts = [i.text for i in load_prompt_set("mb-full").items[:n]]

    async def one(prompt: str) -> None:
        async with semaphore:
            await client.chat.completions.create(
                model="mock", messages=[{"role": "user", "content": prompt}], max_tokens=128
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


async def _adapter(url: str, n: int, concurrency: int) -> float:
    sut = make_sut(f"openai-compat:mock@{url}", SUTOptions(concurrency=concurrency))
    items = load_prompt_set("mb-full").items[:n]
    started = time.perf_counter()
    responses = await sut.respond(items)
    elapsed = time.perf_counter() - started
    await sut.aclose()
    assert all(r.outcome == "ok" for r in responses)
    return elapsed


def api(args: argparse.Namespace) -> None:
    levels = [int(c) for c in args.concurrency.split(",")]
    table = Table(
        title=f"API adapter vs bare client: {args.requests} requests, {args.latency * 1000:.0f} ms server"
    )
    for column in (
        "concurrency",
        "ideal req/s",
        "bare client req/s",
        "bare eff.",
        "adapter req/s",
        "adapter eff.",
    ):
        table.add_column(column, justify="right")
    with mock_server_process(latency_s=args.latency) as url:
        asyncio.run(_bare_client(url, 64, 8))  # warm up connections and imports
        for level in levels:
            n = max(args.requests, level * 4) if level > 1 else min(args.requests, 50)
            ideal = level / args.latency
            bare = n / asyncio.run(_bare_client(url, n, level))
            ours = n / asyncio.run(_adapter(url, n, level))
            table.add_row(
                str(level),
                f"{ideal:.0f}",
                f"{bare:.1f}",
                f"{bare / ideal:.0%}",
                f"{ours:.1f}",
                f"{ours / ideal:.0%}",
            )
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    p_hf = sub.add_parser("hf")
    p_hf.add_argument("--sut", default="smollm2-135m")
    p_hf.add_argument("--batches", default="1,8,32")
    p_hf.add_argument("--max-new-tokens", type=int, default=64)
    p_hf.add_argument("--items", type=int, default=32)
    p_hf.add_argument("--device", default=None)
    p_api = sub.add_parser("api")
    p_api.add_argument("--concurrency", default="1,16,64")
    p_api.add_argument("--requests", type=int, default=1280)
    p_api.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    hf(args) if args.part == "hf" else api(args)


if __name__ == "__main__":
    main()
