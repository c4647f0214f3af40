"""The front door: from a `--sut` spec to its adapter in one hop, and what each side reads itself.

`make_sut` looks the adapter up in one table (`ADAPTERS`); the adapter builds itself from the
parsed spec or registry entry (`from_spec`), locating its weights and reading its key. A
compression chain arrives typed and is never parsed from text again. The walk from the `run`
command to the constructor is measured by `benchmarks/sut_walk.py` (issue 26: at most 5 stops
for the default and for `openai-compat:`, 8 for a compressed spec).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelbench import TransformSpec, UserError, parse_sut_spec
from modelbench.suts import ADAPTERS, SUTOptions, Weights, make_sut

ROOT = Path(__file__).resolve().parents[1]


def test_the_walk_from_the_run_command_to_each_adapter_is_short():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sut_walk.py"), "--show"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    counts = dict(re.findall(r"^(\S+): (\d+) stops in", done.stdout, re.MULTILINE))
    assert set(counts) == {"smollm2-135m", "openai-compat:m@http://127.0.0.1:9/v1", "hf:PATH+wanda=0.5"}
    assert int(counts["smollm2-135m"]) <= 5, done.stdout
    assert int(counts["openai-compat:m@http://127.0.0.1:9/v1"]) <= 5, done.stdout
    assert int(counts["hf:PATH+wanda=0.5"]) <= 8, done.stdout
    # Each route ends in its adapter's own file, straight from the registry's table.
    for adapter in ("huggingface", "openai_compat", "compressed"):
        assert f"registry > {adapter}\n" in done.stdout + "\n", done.stdout


def test_a_compression_chain_arrives_typed_and_is_checked_where_it_is_built(tiny_llama):
    sut = make_sut(f"hf:{tiny_llama}+wanda=0.50+drop-layers=1", SUTOptions())
    assert sut.chain == "wanda=0.5+drop-layers=1"  # canonical: equivalent specs share a cache entry
    assert sut.metadata()["dense_base"] == f"hf:{tiny_llama}"
    from modelbench.suts import CompressedSUT

    steps = parse_sut_spec(f"hf:{tiny_llama}+magnitude=0.3").chain
    assert all(isinstance(step, TransformSpec) for step in steps)
    assert CompressedSUT("x", Weights(path=str(tiny_llama)), steps).chain == "magnitude=0.3"
    with pytest.raises(UserError, match="wanda"):
        CompressedSUT("x", tiny_llama, (TransformSpec("wanda", "1.5"),))


def test_a_named_sut_is_built_by_the_adapter_its_entry_names(tiny_llama, tmp_path):
    from modelbench.suts import HuggingFaceSUT, SUTEntry

    registry = {"mine": SUTEntry(adapter="huggingface", weights=Weights(path=str(tiny_llama)), params=7)}
    sut = make_sut("mine", SUTOptions(), registry)
    assert isinstance(sut, HuggingFaceSUT) and sut.model_path == tiny_llama
    assert sut.metadata()["params"] == 7
    missing = {"gone": SUTEntry(adapter="huggingface", weights=Weights(path=str(tmp_path / "nothing")))}
    with pytest.raises(UserError, match="model not found"):
        make_sut("gone", SUTOptions(), missing)
    with pytest.raises(UserError, match="names no weights"):
        make_sut("bare", SUTOptions(), {"bare": SUTEntry(adapter="huggingface")})


def test_an_api_sut_reads_its_own_key_and_a_required_one_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MODELBENCH_SECRETS_FILE", raising=False)  # no secrets file either
    with pytest.raises(UserError, match="needs an API key: set OPENAI_API_KEY"):
        make_sut("openai:gpt-4o-mini", SUTOptions())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    sut = make_sut("openai:gpt-4o-mini", SUTOptions())
    assert sut._api_key == "sk-from-env" and "sk-from-env" not in str(sut.fingerprint())
    assert sut.metadata()["base_url"] == "https://api.openai.com/v1"


def test_the_uid_is_the_text_as_given_when_the_caller_parsed_it():
    text = "openai-compat:m@http://127.0.0.1:9/v1"
    sut = make_sut(parse_sut_spec(text), SUTOptions(), uid=text)
    assert sut.uid == text and sut.metadata()["spec"] == text


def test_every_built_in_adapter_is_imported_only_when_a_spec_needs_it():
    code = (
        "import sys\n"
        "from modelbench.suts import make_sut\n"
        "heavy = ('modelbench.suts.huggingface', 'modelbench.suts.compressed',"
        " 'modelbench.suts.openai_compat', 'torch', 'aiohttp')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert all(isinstance(ADAPTERS[name], str) for name in ("huggingface", "openai_compat", "compressed"))


def test_the_shipped_calibration_is_found_without_importing_the_evaluators():
    code = (
        "import sys\n"
        "from modelbench.scoring import load_ensemble_config\n"
        "config = load_ensemble_config(None, graders=['minilm-ce'], fingerprints={})\n"
        "print(sorted(m for m in sys.modules if m.startswith('modelbench.graders')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_registry_entry_cannot_name_an_adapter_that_only_a_spec_may(tmp_path):
    from modelbench.suts import SUTEntry

    registry = {"mine": SUTEntry(adapter="compressed")}
    with pytest.raises(
        UserError, match="unsupported adapter 'compressed' \\(known: huggingface, openai_compat"
    ):
        make_sut("mine", SUTOptions(), registry)


def test_a_missing_base_is_named_before_a_bad_chain_and_text_is_no_chain(tmp_path, tiny_llama):
    from modelbench.suts import CompressedSUT

    with pytest.raises(UserError, match="model not found"):
        make_sut(f"hf:{tmp_path / 'nothing'}+drop-layers=abc", SUTOptions())
    with pytest.raises(TypeError, match="parsed steps"):
        CompressedSUT("x", tiny_llama, "wanda=0.5")


def test_a_damaged_stored_configuration_is_one_line():
    from modelbench.reports import as_run_config

    with pytest.raises(UserError, match="stored configuration is unreadable"):
        as_run_config({"counts": 3, "request": "not a mapping"})
