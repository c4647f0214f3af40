"""The HuggingFace SUT on tiny random-weight models, loaded through the real loading path."""

import asyncio
import logging
import threading

import pytest

from modelbench import UserError
from modelbench.prompts import load_prompt_set
from modelbench.suts import SUTOptions, make_sut
from modelbench.suts.huggingface import HuggingFaceSUT


def answer(sut, items):
    """A SUT's answers through its one public door, `respond` (the three steps, locked)."""
    return asyncio.run(sut.respond(items))


@pytest.fixture(scope="module")
def items():
    demo = load_prompt_set("mb-demo").items
    # Prompts of different lengths, so a batch needs padding.
    return sorted(demo, key=lambda i: len(i.text))[::40][:6]


def test_batched_greedy_equals_one_at_a_time(tiny_llama, items):
    sut = HuggingFaceSUT("tiny", tiny_llama, SUTOptions(max_new_tokens=10, batch_size=6), dtype="float32")
    batched = answer(sut, items)
    single = [answer(sut, [item])[0] for item in items]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.completion_tokens for r in batched] == [r.completion_tokens for r in single]
    assert [r.item_uid for r in batched] == [i.uid for i in items]


def test_left_padding_and_token_counts(tiny_llama, items):
    sut = HuggingFaceSUT("tiny", tiny_llama, SUTOptions(max_new_tokens=7))
    loaded = sut._ensure_loaded()
    assert loaded.tokenizer.padding_side == "left"
    prompts = sut.build_prompts(loaded.tokenizer, items)
    assert all(p.startswith("<|im_start|>user\n") and p.endswith("<|im_start|>assistant\n") for p in prompts)
    encoded = loaded.tokenizer(prompts, padding=True, add_special_tokens=False)
    lengths = [len(loaded.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert len(set(lengths)) > 1
    for mask, n in zip(encoded["attention_mask"], lengths, strict=True):
        assert sum(mask) == n and mask[-1] == 1  # padding is on the left
    responses = answer(sut, items)
    assert [r.prompt_tokens for r in responses] == lengths
    assert all(0 <= r.completion_tokens <= 7 for r in responses)
    assert all(r.outcome == "ok" and r.latency_s > 0 for r in responses)


def test_base_model_uses_plain_format_with_a_warning(tiny_base_llama, items, caplog):
    sut = HuggingFaceSUT("base", tiny_base_llama, SUTOptions(max_new_tokens=3))
    with caplog.at_level(logging.WARNING, logger="modelbench"):
        responses = answer(sut, items[:2])
    assert "no chat template" in caplog.text
    prompts = sut.build_prompts(sut._ensure_loaded().tokenizer, items[:1])
    assert prompts == [f"User: {items[0].text}\nAssistant:"]
    assert len(responses) == 2


def test_respond_runs_in_a_worker_thread(tiny_llama, items):
    """Generation blocks for seconds to minutes: on the event loop's thread it would stall every
    other SUT, evaluator and progress update of the run. The thread that generates is recorded
    (counting the loop's ticks meanwhile would pass whenever generation was fast enough)."""
    sut = HuggingFaceSUT("tiny", tiny_llama, SUTOptions(max_new_tokens=3))
    original = sut.generate
    generating: list[int] = []

    def generate(*args, **kwargs):
        generating.append(threading.get_ident())
        return original(*args, **kwargs)

    sut.generate = generate

    async def main():
        return threading.get_ident(), await sut.respond(items)

    loop_thread, responses = asyncio.run(main())
    assert len(responses) == len(items) and all(r.outcome == "ok" for r in responses)
    assert generating and loop_thread not in generating


def test_fingerprint_changes_with_generation_settings(tiny_llama):
    a = HuggingFaceSUT("tiny", tiny_llama, SUTOptions(max_new_tokens=10)).fingerprint()
    b = HuggingFaceSUT("tiny", tiny_llama, SUTOptions(max_new_tokens=11)).fingerprint()
    assert a != b and a == HuggingFaceSUT("tiny", tiny_llama, SUTOptions(max_new_tokens=10)).fingerprint()


def test_a_pinned_dtype_is_used_and_fingerprinted_on_any_cpu(tiny_llama, items):
    # Unpinned, the dtype follows the CPU (bf16 where it is native); pinned, every machine agrees.
    for dtype in ("float32", "bfloat16"):
        sut = make_sut(f"hf:{tiny_llama}", SUTOptions(max_new_tokens=3, dtype=dtype))
        assert sut.fingerprint()["dtype"] == dtype
        answer(sut, items[:1])
        assert str(sut._loaded.model.dtype) == f"torch.{dtype}"


def test_specs_and_errors(tiny_llama, tmp_path):
    sut = make_sut(f"hf:{tiny_llama}", SUTOptions(max_new_tokens=5, batch_size=3))
    assert sut.uid == f"hf:{tiny_llama}" and sut.batch_size == 3
    with pytest.raises(UserError, match="model not found"):
        make_sut(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(UserError, match="no config.json"):
        make_sut(f"hf:{tmp_path}")
    with pytest.raises(UserError, match="unknown SUT 'nope'"):
        make_sut("nope")


@pytest.mark.slow
def test_embedded_smollm2_answers_for_real():
    """The real embedded model: GGUF found through importlib, chat template, greedy generation."""
    pytest.importorskip("gguf")
    sut = make_sut("smollm2-135m", SUTOptions(max_new_tokens=12))
    demo = load_prompt_set("mb-demo").items[:2]
    responses = answer(sut, demo)
    assert all(r.outcome == "ok" and r.text and r.completion_tokens > 0 for r in responses)
    assert sut.metadata()["model_path"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_registry_entries_resolve_from_the_hf_cache_offline(tiny_llama, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub.constants

    from modelbench.suts import load_registry

    cache = tmp_path / "hub"
    snapshot = cache / "models--org--tiny" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_llama, snapshot)
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    config = tmp_path / "suts.yaml"
    config.write_text(
        "suts:\n"
        "  tiny-cached:\n    adapter: huggingface\n    weights: {hf_repo: org/tiny}\n    params: 1000\n"
        "  tiny-absent:\n    adapter: huggingface\n    weights: {hf_repo: org/absent}\n"
    )
    registry = load_registry(config)
    sut = make_sut("tiny-cached", SUTOptions(max_new_tokens=2), registry)
    assert sut.model_path == snapshot and sut.metadata()["params"] == 1000
    assert answer(sut, load_prompt_set("mb-demo").items[:1])[0].outcome == "ok"
    with pytest.raises(
        UserError, match=r"weights for org/absent not found: looked in the Hugging Face cache"
    ):
        make_sut("tiny-absent", registry=registry)
    # The built-in registry lists the literature's models with their dense bases.
    builtin = load_registry()
    assert builtin["llama-2-7b-ultrachat-pruned70"].dense_base == "llama-2-7b-ultrachat"
    assert builtin["llama-2-13b-chat-gptq-4bit"].weights.revision == "4bit_128g"


def test_static_cache_gives_the_same_tokens_and_fills_short_batches(tiny_llama, items):
    """The GPU default (static cache, fixed batch shape) must not change what the model says."""
    dynamic = HuggingFaceSUT(
        "tiny", tiny_llama, SUTOptions(max_new_tokens=8, batch_size=4, kv_cache="dynamic"), dtype="float32"
    )
    static = HuggingFaceSUT(
        "tiny", tiny_llama, SUTOptions(max_new_tokens=8, batch_size=4, kv_cache="static"), dtype="float32"
    )
    assert dynamic.cache_kind("cpu") == "dynamic" and static.cache_kind("cpu") == "static"
    assert HuggingFaceSUT("auto", tiny_llama).cache_kind("cuda:0") == "static"
    assert HuggingFaceSUT("auto", tiny_llama).cache_kind("cpu") == "dynamic"
    short = items[:3]  # fewer than the batch size: filled up to 4 rows, cut back to 3
    expected = answer(dynamic, short)
    got = answer(static, short)
    assert [r.item_uid for r in got] == [i.uid for i in short]
    assert [r.text for r in got] == [r.text for r in expected]
    assert [(r.prompt_tokens, r.completion_tokens) for r in got] == [
        (r.prompt_tokens, r.completion_tokens) for r in expected
    ]
    first_length = static._static_length
    assert first_length % 256 == 0 and first_length >= 8
    answer(static, items[:1])  # a shorter prompt reuses the cache length (no recompile on a GPU)
    assert static._static_length == first_length


def test_dtype_defaults_to_bf16_only_where_it_is_native(tiny_llama, monkeypatch):
    from modelbench.suts import hf_loading

    assert hf_loading.resolve_dtype("cuda:0") == "bfloat16"
    assert hf_loading.resolve_dtype("cpu", "float32") == "float32"
    monkeypatch.setattr(hf_loading, "native_bf16_cpu", lambda: False)
    assert hf_loading.resolve_dtype("cpu") == "float32"
    fp32 = HuggingFaceSUT("tiny", tiny_llama, SUTOptions(device="cpu")).fingerprint()
    monkeypatch.setattr(hf_loading, "native_bf16_cpu", lambda: True)
    assert hf_loading.resolve_dtype("cpu") == "bfloat16"
    bf16 = HuggingFaceSUT("tiny", tiny_llama, SUTOptions(device="cpu"))
    assert bf16.fingerprint()["dtype"] == "bfloat16" and fp32["dtype"] == "float32"
    assert (
        bf16._ensure_loaded().model.dtype.is_floating_point
        and str(bf16._ensure_loaded().model.dtype) == "torch.bfloat16"
    )


def test_automatic_static_cache_falls_back_to_dynamic_for_models_without_one(tiny_llama, items, caplog):
    """On a GPU the static cache is chosen automatically; an architecture that has none must not
    fail the run. Simulated on the CPU by asking for "auto" on a device that picks static."""
    sut = HuggingFaceSUT("tiny", tiny_llama, SUTOptions(max_new_tokens=6, batch_size=2), dtype="float32")
    expected = [r.text for r in answer(sut, items[:2])]
    sut.cache_kind = lambda device: "static"  # what auto picks on a GPU
    model = sut._ensure_loaded().model
    original = model.generate

    def generate(*args, **kwargs):
        if "cache_implementation" in kwargs:
            raise ValueError("This model does not support `cache_implementation='static'`")
        return original(*args, **kwargs)

    model.generate = generate
    with caplog.at_level(logging.WARNING, logger="modelbench"):
        got = [r.text for r in answer(sut, items[:2])]
    assert got == expected and sut.kv_cache == "dynamic"
    assert "no static KV cache" in caplog.text
    asked = HuggingFaceSUT("tiny", tiny_llama, SUTOptions(max_new_tokens=6, batch_size=2, kv_cache="static"))
    asked._ensure_loaded().model.generate = generate
    with pytest.raises(ValueError):  # asked for by name: the error stands
        answer(asked, items[:2])
