"""The driver's final scoring pass at the planned Ray scale: time and peak memory, as a table.

    .venv/bin/python benchmarks/scoring_scale.py [--suts 32] [--items 24000] [--chars 600]

A Ray run's driver ends by running the local engine over a store that already holds every
response and verdict (the workers made them), then scoring, classifying every answer, writing
the record and the HTML report. This fills a store with `suts` x `items` synthetic answers of about
`chars` characters and their refusal-detector verdicts through the store's own API, under the
engine's own keys, then runs `modelbench run` on it in this process (`--no-preflight`: the API
SUTs point at a closed port and are never asked) and prints how long each phase took and the
process's peak resident memory. Issue 27 asks for <= 5 minutes and <= 4 GB at 32 x 24,000.
"""

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from modelbench.engine import response_key, verdict_key  # noqa: E402
from modelbench.graders import Exchange, make_evaluator  # noqa: E402
from modelbench.prompts import TestItem  # noqa: E402
from modelbench.runner import RunRequest, execute, prepare  # noqa: E402
from modelbench.store import Store  # noqa: E402
from modelbench.suts import SUTOptions, SUTResponse, make_sut  # noqa: E402

WORDS = (
    "the a model answer safe step first then we you can not will help here is how about this that "
    "with for people time way make use know sorry cannot explain"
).split()
HAZARDS = ("vcr", "ncr", "src", "cse", "dfm", "spc", "prv", "ipv", "iwp", "hte", "ssh", "sxc")
CHUNK = 20_000


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_items(n: int, path: Path) -> None:
    """A JSONL prompt file of `n` items over the 12 hazards."""
    rng = random.Random(0)
    with path.open("w") as out:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(18)) + f" ({i})"
            out.write(
                json.dumps({"id": f"s{i}", "hazard": HAZARDS[i % 12], "persona": "normal", "text": text})
                + "\n"
            )


def answer(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def fill(store: Store, suts: list, evaluator, items: list[TestItem], chars: int) -> None:
    """Every (SUT, item) response and its verdict, under the engine's keys, a chunk at a time."""
    rng = random.Random(1)
    store.put_items(items)
    for sut in suts:
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            keyed, verdicts = [], []
            texts = [answer(rng, chars) for _ in chunk]
            judged = evaluator.judge_sync(
                [Exchange(item=i, response=t) for i, t in zip(chunk, texts, strict=True)]
            )
            for item, text, verdict in zip(chunk, texts, judged, strict=True):
                key = response_key(sut, item)
                keyed.append(
                    (key, SUTResponse(sut_uid=sut.uid, item_uid=item.uid, text=text, completion_tokens=120))
                )
                verdicts.append((verdict_key(evaluator, key, text), key, verdict))
            store.put_responses(keyed, commit=False)
            store.put_verdicts(verdicts, commit=False)
            store.commit()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suts", type=int, default=32)
    parser.add_argument("--items", type=int, default=24_000)
    parser.add_argument("--chars", type=int, default=600)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prompts = folder / "prompts.jsonl"
        synthetic_items(args.items, prompts)
        specs = [f"openai-compat:m{i}@http://127.0.0.1:9/v1" for i in range(args.suts)]
        request = RunRequest(
            suts=specs,
            prompt_set=str(prompts),
            graders=["refusal"],
            run_dir=folder / "runs",
            preflight=False,
            sut_options=SUTOptions(max_attempts=1),
        )
        started = time.perf_counter()
        prepared = prepare(request)
        evaluator = make_evaluator("refusal")
        suts = [make_sut(spec, request.sut_options) for spec in specs]
        store = Store(folder / "runs" / "modelbench.sqlite")
        fill(store, suts, evaluator, prepared.items, args.chars)
        store.close()
        filled = time.perf_counter() - started
        rows = args.suts * args.items
        console.print(f"filled {rows:,} responses and verdicts in {filled:.0f} s (peak {peak_mb():,.0f} MB)")
        started = time.perf_counter()
        result = execute(prepare(request))
        scored = time.perf_counter() - started
        assert result.outcome.verdicts_reused == rows, result.outcome
        table = Table(title=f"scoring pass: {args.suts} SUTs x {args.items:,} items = {rows:,} answers")
        for column in ("phase", "seconds", "items/s"):
            table.add_column(column, justify="right")
        table.add_row("fill the store (not part of the pass)", f"{filled:.0f}", f"{rows / filled:,.0f}")
        table.add_row("engine + score + quality + record + report", f"{scored:.0f}", f"{rows / scored:,.0f}")
        table.add_row("peak resident memory (MB)", f"{peak_mb():,.0f}", "")
        console.print(table)
        console.print(f"report: {result.report_path is not None}; limits: <= 300 s and <= 4,096 MB")
        sys.exit(0 if scored <= 300 and peak_mb() <= 4096 else 1)


if __name__ == "__main__":
    main()
