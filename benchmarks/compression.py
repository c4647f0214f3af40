"""Compressed variants of the embedded SmolLM2-135M-Instruct beside the dense model (CPU by default).

Prints one table; every number comes from this run (compressed weights are cached, so a second run
reports the first run's compression time, read from the cached metadata). Usage:

    .venv/bin/python benchmarks/compression.py [--variants drop-layers=6,wanda=0.5] [--cache-root DIR]

Perplexity is measured on the held-out calibration slice after reloading each saved checkpoint, so
it also checks that the checkpoint on disk is the model that was measured while compressing.
Tokens/s is greedy generation of exactly --new-tokens tokens (no early stop) for --batch
chat-formatted prompts; unstructured zeros do not speed up dense CPU kernels, dropped blocks do.
"""

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from modelbench.prompts import load_prompt_set  # noqa: E402
from modelbench.suts import builtin_registry  # noqa: E402
from modelbench.suts.compress import (  # noqa: E402
    build_compressed,
    calibration_texts,
    decoder_layers,
    default_cache_root,
    linear_zero_count,
    parameter_counts,
    perplexity,
    tokenize,
)
from modelbench.suts.hf_loading import load_causal_lm  # noqa: E402

DEFAULT_VARIANTS = "drop-layers=6,magnitude=0.5,wanda=0.5,wanda=2:4,wanda=0.7"


@dataclass
class Row:
    variant: str
    layers: int
    sparsity: float
    params: int
    nonzero: int
    perplexity: float
    tokens_per_s: float
    compression_s: float | None


def tokens_per_second(loaded: Any, prompts: list[str], new_tokens: int, repeats: int = 3) -> float:
    """Best of `repeats` timed batches after a warm-up, so a busy shared CPU hurts less."""
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    encoded = {k: v.to(loaded.device) for k, v in encoded.items()}

    def run(tokens: int) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                **encoded,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        return time.perf_counter() - started

    run(2)
    best = min(run(new_tokens) for _ in range(repeats))
    return len(prompts) * new_tokens / best


def chat_prompts(tokenizer: Any, batch: int) -> list[str]:
    items = load_prompt_set("mb-demo").items[:batch]
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": item.text}], tokenize=False, add_generation_prompt=True
        )
        for item in items
    ]


def measure(
    variant: str, path: Path, heldout: list[str], args: argparse.Namespace, seconds: float | None
) -> Row:
    loaded = load_causal_lm(path, args.device)
    zeros, numel = linear_zero_count(loaded.model)
    params, nonzero = parameter_counts(loaded.model)
    return Row(
        variant=variant,
        layers=len(decoder_layers(loaded.model)),
        sparsity=zeros / numel,
        params=params,
        nonzero=nonzero,
        perplexity=perplexity(loaded.model, tokenize(loaded.tokenizer, heldout, loaded.device)),
        tokens_per_s=tokens_per_second(loaded, chat_prompts(loaded.tokenizer, args.batch), args.new_tokens),
        compression_s=seconds,
    )


def render(rows: list[Row], title: str) -> Table:
    table = Table(title=title)
    columns = ("variant", "layers", "sparsity", "params", "nonzero", "perplexity", "x dense", "tokens/s")
    for column in (*columns, "compress s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    dense = rows[0]
    for row in rows:
        table.add_row(
            row.variant,
            str(row.layers),
            f"{row.sparsity:.2%}",
            f"{row.params / 1e6:.1f}M",
            f"{row.nonzero / 1e6:.1f}M",
            f"{row.perplexity:.2f}",
            f"{row.perplexity / dense.perplexity:.2f}",
            f"{row.tokens_per_s:.1f}",
            "-" if row.compression_s is None else f"{row.compression_s:.1f}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sut", default="smollm2-135m")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated chains")
    parser.add_argument("--calibration-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-root", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    base = builtin_registry()[args.sut].locate()
    cache_root = args.cache_root or default_cache_root()
    heldout = calibration_texts(args.calibration_size, args.seed).heldout
    rows = [measure("dense", base, heldout, args, None)]
    for chain in filter(None, args.variants.split(",")):
        started = time.perf_counter()
        folder, meta = build_compressed(
            base, chain, cache_root, args.calibration_size, args.seed, args.device
        )
        print(f"{chain}: {folder} ({time.perf_counter() - started:.0f}s to build or find)", flush=True)
        row = measure(chain, folder, heldout, args, meta.compression_seconds)
        if abs(row.perplexity - meta.perplexity) > 1e-3 * meta.perplexity:
            print(f"  warning: reloaded perplexity {row.perplexity:.3f} != recorded {meta.perplexity:.3f}")
        rows.append(row)
    title = (
        f"{args.sut}: calibration {args.calibration_size} prompts (seed {args.seed}), "
        f"perplexity on {len(heldout)} held-out prompts, {args.batch}x{args.new_tokens} greedy tokens"
    )
    Console(width=140).print(render(rows, title))


if __name__ == "__main__":
    main()
