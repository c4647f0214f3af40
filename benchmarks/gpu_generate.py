"""GPU generation throughput: the HuggingFace adapter against raw generate(), printed as a table.

    python3 benchmarks/gpu_generate.py --tokenizer DIR [--shapes smollm2,llama8b] [--batches 1,64,128]
        [--max-new-tokens 128] [--static-batches 1,128] [--deadline-s 420] [--json FILE]

Random-weight models with the shapes of SmolLM2-135M and Llama-3.1-8B, bf16 on the GPU. Every
row generates the same greedy tokens for the same chat-formatted mb-demo prompts, once through
raw `model.generate()` and once through the adapter's own path (prompt building, tokenising,
left padding, generate with its stopping criteria, stripping, decoding). End-of-sequence is
switched off so that every row generates exactly max-new-tokens per prompt; tokens/s counts
those. Each figure is the best of `--repeats` timed runs after one warm-up.

The SmolLM2-shaped model goes through the adapter's real loading path (save_pretrained, then
`hf:DIR` loaded bf16 straight onto the GPU); the 8B-shaped model is built on the GPU and handed
to the adapter, which saves writing and reading 16 GB on a lent machine's clock.

`--static-batches` adds rows for the adapter with a static KV cache (transformers compiles the
decoding step); the first call at each batch size pays the compile, reported separately.
"""

import argparse
import asyncio
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHAPES: dict[str, dict[str, Any]] = {
    "smollm2": dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
        rope_theta=100000.0, tie_word_embeddings=True,
    ),
    "tiny": dict(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
    ),
    "llama8b": dict(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
        rope_theta=500000.0, tie_word_embeddings=False,
    ),
}  # fmt: skip


def answer(sut, items):
    """A SUT's answers through its one public door, `respond` (the three steps, locked)."""
    return asyncio.run(sut.respond(items))


def build_model(shape: str, tokenizer: Any, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**SHAPES[shape], bos_token_id=None, eos_token_id=None)
    config.pad_token_id = tokenizer.pad_token_id
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Any, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        result = fn()
        synchronize()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--shapes", default="smollm2,llama8b")
    parser.add_argument("--batches", default="1,64,128")
    parser.add_argument("--static-batches", default="1,128")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--deadline-s", type=float, default=420.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--run-items",
        type=int,
        default=0,
        help="also pass this many mb-demo items (varied lengths, longest first, like a run) through the "
        "adapter in batches, with each KV cache; per-batch seconds show any recompiles",
    )
    parser.add_argument("--run-batch", type=int, default=64)
    parser.add_argument("--device", default="cuda", help="cpu only to check the script on a tiny shape")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from modelbench.prompts import load_prompt_set

    began = time.perf_counter()
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"{name} torch {torch.__version__}", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(str(args.tokenizer))
    tokenizer.padding_side = "left"
    items = load_prompt_set("mb-demo").items
    rows: list[dict[str, Any]] = []

    def record(**row: Any) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))

    for shape in args.shapes.split(","):
        sut = adapter_for(shape, args, tokenizer, record)
        for batch in [int(b) for b in args.batches.split(",") if b]:
            compare_with_raw(sut, shape, batch, items, args, record)
        if args.run_items:
            run_like_the_engine(sut, shape, items, args, record)
        for batch in [int(b) for b in args.static_batches.split(",") if b]:
            if time.perf_counter() - began > args.deadline_s:
                record(shape=shape, kind="static", batch=batch, skipped="deadline")
                continue
            static_rows(sut, shape, batch, items, args, record)
        del sut
        if args.device == "cuda":
            torch.cuda.empty_cache()
    print_table(rows)
    print(f"total {time.perf_counter() - began:.0f}s", file=sys.stderr)


def adapter_for(shape: str, args: argparse.Namespace, tokenizer: Any, record: Any) -> Any:
    """The adapter over a random-weight model of `shape`: small shapes through the real loading path."""
    import torch

    from modelbench.suts import SUTOptions, make_sut
    from modelbench.suts.hf_loading import LoadedModel
    from modelbench.suts.huggingface import HuggingFaceSUT

    model = build_model(shape, tokenizer, args.device)
    params = sum(p.numel() for p in model.parameters())
    load_s = None
    if shape in ("smollm2", "tiny"):
        folder = Path(tempfile.mkdtemp()) / shape
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        del model
        started = time.perf_counter()
        sut = make_sut(f"hf:{folder}", SUTOptions(max_new_tokens=args.max_new_tokens, device=args.device))
        model = sut._ensure_loaded().model  # type: ignore[attr-defined]
        load_s = time.perf_counter() - started
        if args.device == "cuda":  # the GPU loading path: bf16, placed straight on the device
            assert model.device.type == "cuda" and model.dtype == torch.bfloat16, model.device
    else:
        sut = HuggingFaceSUT(shape, Path("."), SUTOptions(max_new_tokens=args.max_new_tokens))
        sut._loaded = LoadedModel(model=model, tokenizer=tokenizer, device=args.device)
    record(shape=shape, kind="model", params=params, load_s=load_s)
    return sut


def compare_with_raw(
    sut: Any, shape: str, batch: int, items: list[Any], args: argparse.Namespace, record: Any
) -> None:
    """Raw generate() and the adapter (dynamic cache) on the same prompts, best of --repeats."""
    import torch

    loaded = sut._ensure_loaded()
    tokenizer, model = loaded.tokenizer, loaded.model
    chosen = [items[i % len(items)] for i in range(batch)]
    encoded = tokenizer(
        sut.build_prompts(tokenizer, chosen), return_tensors="pt", padding=True, add_special_tokens=False
    )
    encoded = {k: v.to(args.device) for k, v in encoded.items()}

    def raw() -> Any:
        with torch.inference_mode():
            return model.generate(
                **encoded, max_new_tokens=args.max_new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip

    sut.kv_cache, sut.options = "dynamic", sut.options.model_copy(update={"batch_size": batch})
    raw()
    raw_s, output = timed(raw, args.repeats)
    prompt_len = int(encoded["input_ids"].shape[1])
    assert output.shape[1] - prompt_len == args.max_new_tokens
    answer(sut, chosen)
    adapter_s, responses = timed(lambda: answer(sut, chosen), args.repeats)
    tokens = batch * args.max_new_tokens
    # Rows may differ where a random model emits the end-of-turn token: the adapter cuts there.
    decoded = tokenizer.batch_decode(output[:, prompt_len:].tolist(), skip_special_tokens=True)
    record(
        shape=shape, kind="dynamic", batch=batch, prompt_len=prompt_len,
        raw_tok_s=round(tokens / raw_s, 1), adapter_tok_s=round(tokens / adapter_s, 1),
        adapter_vs_raw=round(raw_s / adapter_s, 3),
        ms_per_step_raw=round(1000 * raw_s / args.max_new_tokens, 2),
        same_text=[r.text for r in responses] == [t.strip() for t in decoded],
    )  # fmt: skip


def run_like_the_engine(
    sut: Any, shape: str, items: list[Any], args: argparse.Namespace, record: Any
) -> None:
    """Varied-length items, longest first, in batches: once dynamic, twice static (compile, then steady)."""
    run_items = sorted(items[: args.run_items], key=lambda i: len(i.text), reverse=True)
    sut.options = sut.options.model_copy(update={"batch_size": args.run_batch})
    for cache in ("dynamic", "static", "static"):
        sut.kv_cache = cache
        seconds = []
        for start in range(0, len(run_items), args.run_batch):
            chunk = run_items[start : start + args.run_batch]
            step_s, _ = timed(functools.partial(answer, sut, chunk), 1)
            seconds.append(round(step_s, 2))
        tokens = len(run_items) * args.max_new_tokens
        record(
            shape=shape, kind=f"run-{cache}", items=len(run_items), batch_s=seconds,
            tok_s=round(tokens / sum(seconds), 1),
        )  # fmt: skip


def static_rows(
    sut: Any, shape: str, batch: int, items: list[Any], args: argparse.Namespace, record: Any
) -> None:
    """The adapter with a static cache: the first call compiles, then best of --repeats."""
    chosen = [items[i % len(items)] for i in range(batch)]
    sut.kv_cache, sut.options = "static", sut.options.model_copy(update={"batch_size": batch})
    started = time.perf_counter()
    answer(sut, chosen)
    first_s = time.perf_counter() - started
    static_s, _ = timed(functools.partial(answer, sut, chosen), args.repeats)
    tokens = batch * args.max_new_tokens
    record(
        shape=shape, kind="static", batch=batch, first_call_s=round(first_s, 1),
        adapter_tok_s=round(tokens / static_s, 1),
    )  # fmt: skip


def print_table(rows: list[dict[str, Any]]) -> None:
    """The rows again as one table: tokens/s by shape, cache and batch."""
    print(
        f"{'shape':<8} {'cache':<12} {'batch':>5} {'raw tok/s':>10} {'adapter tok/s':>14} {'adapter/raw':>11}"
    )
    for row in rows:
        if row["kind"] == "model":
            continue
        batch = row.get("batch", row.get("items", ""))
        raw = row.get("raw_tok_s", "")
        ratio = row.get("adapter_vs_raw", "")
        adapter = row.get("adapter_tok_s", row.get("tok_s", row.get("skipped", "")))
        print(f"{row['shape']:<8} {row['kind']:<12} {batch!s:>5} {raw!s:>14} {adapter!s:>14} {ratio!s:>14}")


if __name__ == "__main__":
    main()
