"""Compressed SUTs from spec strings: built once, cached, graded beside their dense base."""

import json

from click.testing import CliRunner
from transformers import AutoModelForCausalLM

from modelbench import UserError
from modelbench.cli import main
from modelbench.suts import CompressedSUT, SUTOptions, make_sut

WIDE = {"COLUMNS": "200"}


def test_spec_makes_a_compressed_sut_without_building_it(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELBENCH_CACHE", str(tmp_path / "cache"))
    sut = make_sut(f"hf:{tiny_llama}+magnitude=0.5", SUTOptions(calibration_size=4))
    assert isinstance(sut, CompressedSUT) and sut.chain == "magnitude=0.5"
    assert sut.fingerprint()["compression"] == {
        "chain": "magnitude=0.5",
        "calibration_size": 4,
        "calibration_seed": 0,
    }
    assert sut.metadata()["compression_metadata"] is None  # nothing built yet
    assert not (tmp_path / "cache").exists()
    dense = make_sut(f"hf:{tiny_llama}")
    assert dense.fingerprint() != sut.fingerprint()


def test_bad_compression_specs_are_user_errors(tiny_llama):
    import pytest

    with pytest.raises(UserError):
        make_sut(f"hf:{tiny_llama}+wanda=1.5")
    with pytest.raises(UserError, match="needs a local base model"):
        make_sut("openai-compat:m@http://127.0.0.1:1/v1+wanda=0.5")


def test_run_dense_and_compressed_then_compress_command(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELBENCH_CACHE", str(tmp_path / "cache"))
    runner = CliRunner(env=WIDE)
    dense, sparse = f"hf:{tiny_llama}", f"hf:{tiny_llama}+wanda=0.5"
    args = ["run", "--sut", dense, "--sut", sparse, "--max-items", "12", "--max-new-tokens", "3"]
    args += ["--calibration-size", "4", "--run-dir", str(tmp_path / "runs")]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads(next((tmp_path / "runs").glob("*/record.json")).read_text())
    meta = record["suts"][sparse]["metadata"]
    assert meta["dense_base"] == dense and meta["chain"] == "wanda=0.5"
    details = meta["compression_metadata"]
    assert details["sparsity"] > 0.45 and details["chain"] == "wanda=0.5"
    assert meta["sparsity"] == details["sparsity"]
    cached = list((tmp_path / "cache").rglob("compression.json"))
    assert len(cached) == 1
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "reused 24/24 stored responses" in again.output
    out = tmp_path / "saved"
    saved = runner.invoke(main, ["compress", sparse, "--out", str(out), "--calibration-size", "4"])
    assert saved.exit_code == 0, saved.output
    assert "sparsity" in saved.output and (out / "compression.json").is_file()
    assert len(list((tmp_path / "cache").rglob("compression.json"))) == 1  # reused, not rebuilt
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 2
    refused = runner.invoke(main, ["compress", dense, "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "names no compression" in refused.output
