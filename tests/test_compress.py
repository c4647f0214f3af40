"""Compression transforms on tiny random-weight Llamas, each checked against a direct computation."""

import math
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_llama
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from modelbench import UserError
from modelbench.suts import compress, load_causal_lm
from modelbench.suts.compress import (
    NM,
    DropLayers,
    Magnitude,
    Wanda,
    apply_chain,
    build_compressed,
    calibration_texts,
    canonical_chain,
    decoder_linears,
    load_cached,
    nm_valid,
    parse_chain,
    tokenize,
)

CALIBRATION = 8
HELDOUT = 4
PLANTED = (3, 4)  # blocks made near-identity in the planted model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices gain nothing from threads, and on a shared CPU idle-spinning threads slow
    every matmul by an order of magnitude."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def six_layers(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("compress") / "six", layers=6, seed=3)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """Six blocks, of which blocks 3 and 4 barely write to the residual stream: a known argmin."""
    folder = build_tiny_llama(tmp_path_factory.mktemp("compress") / "planted", layers=6, seed=4)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        for index in PLANTED:
            block = model.model.layers[index]
            block.self_attn.o_proj.weight.mul_(1e-3)
            block.mlp.down_proj.weight.mul_(1e-3)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def calibration_ids(six_layers):
    """Right-padded batches, as the transforms get them (batches of 3, so padding is exercised)."""
    tokenizer = load_causal_lm(six_layers, "cpu", "float32").tokenizer
    return tokenize(tokenizer, calibration_texts(CALIBRATION, 0, HELDOUT).calibration, "cpu", batch_size=3)


def one_by_one(path: Path) -> list[torch.Tensor]:
    """The calibration prompts as separate unpadded sequences, for the brute-force computations."""
    tokenizer = load_causal_lm(path, "cpu", "float32").tokenizer
    texts = calibration_texts(CALIBRATION, 0, HELDOUT).calibration
    return [
        tokenizer(text, return_tensors="pt", truncation=True, max_length=compress.MAX_TOKENS)["input_ids"]
        for text in texts
    ]


def compressed(base: Path, chain: str, calibration: list) -> tuple:
    loaded = load_causal_lm(base, "cpu", "float32")
    dense = {name: tensor.clone() for name, tensor in loaded.model.state_dict().items()}
    steps, _ = apply_chain(loaded.model, parse_chain(chain), calibration)
    return loaded.model, dense, steps


def brute_force_distances(model, calibration: list, n: int) -> list[float]:
    """Angular distances from output_hidden_states, with the final norm removed so that the last
    hidden state is the raw output of the last block."""
    model.model.norm = torch.nn.Identity()
    per_sample = []
    with torch.no_grad():
        for ids in calibration:
            states = model(input_ids=ids, output_hidden_states=True).hidden_states
            row = []
            for start in range(len(states) - n):
                a, b = states[start][0, -1].double(), states[start + n][0, -1].double()
                cosine = float(a @ b / (a.norm() * b.norm()))
                row.append(math.acos(max(-1.0, min(1.0, cosine))) / math.pi)
            per_sample.append(row)
    return [sum(column) / len(column) for column in zip(*per_sample, strict=True)]


# -- specs ------------------------------------------------------------------------------------------


def test_parse_chain_and_canonical_form():
    assert parse_chain("drop-layers=6+wanda=0.5") == [DropLayers(6), Wanda(0.5)]
    chain = parse_chain(" wanda=.50 + magnitude=2:4")
    assert canonical_chain(chain) == "wanda=0.5+magnitude=2:4"
    assert chain[1] == Magnitude(NM(2, 4)) and chain[1].sparsity == NM(2, 4)
    # Splitting BASE+CHAIN out of a SUT spec is tested with the grammar, in test_specs.py.


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty compression chain"),
        ("wanda=0.5+", "empty transform"),
        ("prune=0.5", "unknown compression transform 'prune'"),
        ("wanda", "'wanda' needs a value"),
        ("wanda=1.5", "strictly between 0 and 1"),
        ("magnitude=0", "strictly between 0 and 1"),
        ("wanda=nan", "strictly between 0 and 1"),
        ("wanda=half", "give a sparsity in"),
        ("wanda=4:2", "0 < N < M"),
        ("magnitude=0:4", "0 < N < M"),
        ("drop-layers=0", "positive whole number"),
        ("drop-layers=2.5", "positive whole number"),
    ],
)
def test_bad_specs_are_user_errors(text, message):
    with pytest.raises(UserError, match=message):
        parse_chain(text)


def test_dropping_too_many_layers_is_a_user_error(six_layers, calibration_ids):
    with pytest.raises(UserError, match="fewer than the model's 6 decoder layers"):
        parse_chain("drop-layers=6", num_layers=6)
    with pytest.raises(UserError, match="fewer than the model's 3"):
        parse_chain("drop-layers=3+drop-layers=3", num_layers=6)
    with pytest.raises(UserError, match="not a multiple of M"):
        compressed(six_layers, "magnitude=3:5", calibration_ids)


# -- pruning ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.5, 0.3])
def test_magnitude_prunes_exactly_the_smallest_per_matrix(six_layers, calibration_ids, sparsity):
    model, dense, _ = compressed(six_layers, f"magnitude={sparsity}", calibration_ids)
    for name, linear in decoder_linears(model):
        before = dense[f"model.{name}.weight"]
        pruned = linear.weight == 0
        assert int(pruned.sum()) == round(sparsity * before.numel()), name
        assert before.abs()[pruned].max() <= before.abs()[~pruned].min(), name
    state = model.state_dict()
    for name in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"):
        assert torch.equal(state[name], dense[name])


def test_wanda_uses_activations_of_the_already_pruned_blocks(six_layers, calibration_ids):
    model, dense, _ = compressed(six_layers, "wanda=0.5", calibration_ids)
    rows = one_by_one(six_layers)
    # q_proj's input depends only on earlier blocks, so the final model shows what Wanda saw.
    pruned_norms = _q_input_norms(model, rows)
    dense_norms = _q_input_norms(_dense_model(six_layers), rows)
    worst_with_dense_norms = -math.inf
    for index, layer in enumerate(model.model.layers):
        for name, linear in layer.named_modules():
            if isinstance(linear, torch.nn.Linear):
                zeros = (linear.weight == 0).sum(dim=1)
                assert torch.all(zeros == round(0.5 * linear.in_features)), f"{index}.{name}"
        before = dense[f"model.layers.{index}.self_attn.q_proj.weight"]
        pruned = layer.self_attn.q_proj.weight == 0
        assert _order_violation(before, pruned, pruned_norms[index]) < 1e-5, index
        violation = _order_violation(before, pruned, dense_norms[index])
        worst_with_dense_norms = max(worst_with_dense_norms, violation)
    assert worst_with_dense_norms > 1e-2, "deeper blocks should see the pruned blocks' activations"


def _dense_model(path: Path):
    return load_causal_lm(path, "cpu", "float32").model


def _q_input_norms(model, calibration: list) -> list[torch.Tensor]:
    sums = [torch.zeros(p.self_attn.q_proj.in_features, dtype=torch.float64) for p in model.model.layers]

    def accumulate(index: int):
        def hook(module, args) -> None:
            sums[index] += (args[0].double() ** 2).reshape(-1, module.in_features).sum(0)

        return hook

    handles = [
        layer.self_attn.q_proj.register_forward_pre_hook(accumulate(i))
        for i, layer in enumerate(model.model.layers)
    ]
    with torch.no_grad():
        for ids in calibration:
            model(input_ids=ids, use_cache=False)
    for handle in handles:
        handle.remove()
    return sums


def _order_violation(weight: torch.Tensor, pruned: torch.Tensor, squared_norms: torch.Tensor) -> float:
    """How far, relatively, a pruned weight outscores a kept one in the same row (<= 0: never).

    Wanda's rule, stated directly: within a row, every pruned |W_ij| * ||X_j|| is at most every
    kept one. The slack in the caller absorbs float noise between batched and one-by-one runs.
    """
    score = weight.abs().double() * squared_norms.sqrt()
    worst = -math.inf
    for row in range(weight.shape[0]):
        highest_pruned = float(score[row][pruned[row]].max())
        lowest_kept = float(score[row][~pruned[row]].min())
        worst = max(worst, (highest_pruned - lowest_kept) / lowest_kept)
    return worst


@pytest.mark.parametrize("chain", ["wanda=2:4", "magnitude=2:4"])
def test_two_four_keeps_two_of_every_four(six_layers, calibration_ids, chain):
    model, dense, _ = compressed(six_layers, chain, calibration_ids)
    for name, linear in decoder_linears(model):
        groups = linear.weight.reshape(linear.out_features, -1, 4)
        assert torch.all((groups == 0).sum(dim=-1) == 2), name
    if chain.startswith("magnitude"):
        q = dense["model.layers.0.self_attn.q_proj.weight"].abs().reshape(-1, 8, 4)
        kept = model.model.layers[0].self_attn.q_proj.weight.reshape(-1, 8, 4) != 0
        assert torch.all(
            q[kept].reshape(-1, 8, 2).min(-1).values >= q[~kept].reshape(-1, 8, 2).max(-1).values
        )
    assert nm_valid(model, NM(2, 4))
    with torch.no_grad():
        model.model.layers[2].mlp.up_proj.weight[0, :4] = 1.0
    assert not nm_valid(model, NM(2, 4))


# -- drop-layers ------------------------------------------------------------------------------------


def test_drop_layers_removes_the_argmin_range(six_layers, calibration_ids):
    model, _, steps = compressed(six_layers, "drop-layers=3", calibration_ids)
    expected = brute_force_distances(_dense_model(six_layers), one_by_one(six_layers), 3)
    assert steps[0].angular_distances == pytest.approx(expected, abs=1e-6)
    start = expected.index(min(expected))
    assert steps[0].start == start and steps[0].removed_layers == [start, start + 1, start + 2]
    assert len(model.model.layers) == model.config.num_hidden_layers == 3


def test_planted_layers_are_dropped_and_the_model_reloads(planted, tmp_path):
    folder, meta = build_compressed(
        planted, "drop-layers=2", tmp_path, calibration_size=CALIBRATION, heldout_size=HELDOUT, device="cpu"
    )
    loaded = load_causal_lm(planted, "cpu", "float32")
    calibration = one_by_one(planted)
    expected = brute_force_distances(loaded.model, calibration, 2)
    assert meta.angular_distances == pytest.approx(expected, abs=1e-6)
    assert expected.index(min(expected)) == PLANTED[0] and meta.removed_layers == list(PLANTED)
    assert (meta.layers_before, meta.layers_after) == (6, 4)
    block = sum(p.numel() for p in loaded.model.model.layers[0].parameters())
    assert meta.params_after == meta.params_before - 2 * block
    assert meta.sparsity < 0.01 and meta.nm_valid is None
    assert math.isfinite(meta.perplexity) and math.isfinite(meta.dense_perplexity)

    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    assert reloaded.config.num_hidden_layers == len(reloaded.model.layers) == 4
    assert [layer.self_attn.layer_idx for layer in reloaded.model.layers] == [0, 1, 2, 3]
    original = loaded.model.state_dict()
    for new, old in enumerate((0, 1, 2, 5)):
        for name, tensor in reloaded.model.layers[new].state_dict().items():
            assert torch.equal(tensor, original[f"model.layers.{old}.{name}"]), (new, name)
    _generates_the_same_with_and_without_cache(reloaded, calibration[0])


def _generates_the_same_with_and_without_cache(model, ids: torch.Tensor) -> None:
    """A wrong layer_idx would make two blocks share a KV cache slot, or index past the cache."""
    kwargs = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        cached = model.generate(input_ids=ids, use_cache=True, **kwargs)
        uncached = model.generate(input_ids=ids, use_cache=False, **kwargs)
    assert cached.shape[1] == ids.shape[1] + 6 and torch.equal(cached, uncached)


# -- calibration, cache -----------------------------------------------------------------------------


def test_calibration_slices_are_seeded_and_disjoint():
    first, again, other = calibration_texts(16, 0), calibration_texts(16, 0), calibration_texts(16, 1)
    assert first == again and first.calibration != other.calibration
    assert first.heldout == other.heldout == calibration_texts(4, 7).heldout
    assert not set(first.calibration) & set(first.heldout) and len(set(first.calibration)) == 16


def test_same_seed_gives_identical_weights(six_layers, tmp_path):
    def build(root: str, seed: int) -> dict[str, torch.Tensor]:
        folder, meta = build_compressed(
            six_layers,
            "wanda=0.5",
            tmp_path / root,
            CALIBRATION,
            seed=seed,
            device="cpu",
            heldout_size=HELDOUT,
        )
        assert meta.sparsity == 0.5 and meta.calibration_seed == seed
        return load_file(folder / "model.safetensors")

    first, again, other = build("a", 0), build("b", 0), build("c", 1)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_second_build_is_a_cache_hit(six_layers, tmp_path, monkeypatch):
    folder, meta = build_compressed(six_layers, "wanda=2:4", tmp_path, CALIBRATION, heldout_size=HELDOUT)
    assert meta.nm_pattern == "2:4" and meta.nm_valid is True

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed a cached entry")

    monkeypatch.setattr(compress, "load_causal_lm", must_not_run)
    monkeypatch.setattr(compress, "compress_loaded", must_not_run)
    again, cached = build_compressed(six_layers, " wanda = 2:4 ", tmp_path, CALIBRATION, heldout_size=HELDOUT)
    assert again == folder and cached == meta
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    assert nm_valid(reloaded, NM(2, 4))
    _generates_the_same_with_and_without_cache(reloaded, torch.tensor([[5, 6, 7]]))


def test_a_crash_leaves_no_cache_entry(six_layers, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(compress.CompressionMetadata, "model_dump_json", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        build_compressed(six_layers, "magnitude=0.5", tmp_path, CALIBRATION, heldout_size=HELDOUT)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    folder, _ = build_compressed(six_layers, "magnitude=0.5", tmp_path, CALIBRATION, heldout_size=HELDOUT)
    assert load_cached(folder) is not None and [p.name for p in tmp_path.iterdir()] == [folder.name]


@pytest.mark.slow
def test_embedded_gguf_compresses_to_a_normal_checkpoint(tmp_path):
    """The real SmolLM2 GGUF: dequantised, pruned, saved without the GGUF quantizer, reloaded."""
    pytest.importorskip("gguf")
    from modelbench.suts import builtin_registry

    base = builtin_registry()["smollm2-135m"].locate()
    folder, meta = build_compressed(
        base, "drop-layers=2+magnitude=2:4", tmp_path, calibration_size=4, heldout_size=4, device="cpu"
    )
    assert (meta.layers_before, meta.layers_after) == (30, 28) and meta.nm_valid is True
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    assert reloaded.config.num_hidden_layers == 28 and not hasattr(reloaded.config, "quantization_config")
    _generates_the_same_with_and_without_cache(reloaded, torch.tensor([[1, 2, 3, 4]]))
