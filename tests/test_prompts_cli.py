"""`modelbench prompts render|stats`, the v0.5 persona set, and runs on imported files."""

import json

import pytest
from click.testing import CliRunner
from conftest import AILUMINATE_DEMO

from modelbench.cli import main
from modelbench.prompts import import_prompt_file, load_prompt_set

WIDE = {"COLUMNS": "200"}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_render_round_trips_through_the_importer(tmp_path, suffix):
    out = tmp_path / f"demo{suffix}"
    result = CliRunner(env=WIDE).invoke(main, ["prompts", "render", "--set", "mb-demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 300 items" in result.output
    original = load_prompt_set("mb-demo").items
    imported = import_prompt_file(out).items
    fields = ("uid", "hazard", "subhazard", "persona", "locale", "text")
    assert [tuple(getattr(i, f) for f in fields) for i in imported] == [
        tuple(getattr(i, f) for f in fields) for i in original
    ]


def test_render_errors(tmp_path):
    runner = CliRunner(env=WIDE)
    bad_suffix = runner.invoke(
        main, ["prompts", "render", "--set", "mb-demo", "--out", str(tmp_path / "x.txt")]
    )
    assert bad_suffix.exit_code == 2 and "must end in .csv or .jsonl" in bad_suffix.output
    unknown = runner.invoke(main, ["prompts", "render", "--set", "nope", "--out", str(tmp_path / "x.csv")])
    assert unknown.exit_code == 2 and "unknown prompt set 'nope'" in unknown.output


def test_stats_of_a_built_in_set():
    result = CliRunner(env=WIDE).invoke(main, ["prompts", "stats", "--prompt-set", "mb-demo"])
    assert result.exit_code == 0, result.output
    assert "spc_ele 20" in result.output and "locales: en_US 300" in result.output


def test_v05_persona_set():
    items = load_prompt_set("mb-full-v05").items
    assert {i.persona for i in items} == {"typical", "malicious", "vulnerable"}
    assert len(items) == len(load_prompt_set("mb-full").items)


def test_stats_with_skip_invalid(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [
        {"prompt": "hi", "hazard": "vcr"},
        {"prompt": "", "hazard": "vcr"},
        {"prompt": "x", "hazard": "nope"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows), "utf-8")
    runner = CliRunner(env=WIDE)
    failing = runner.invoke(main, ["prompts", "stats", "--prompt-set", str(path)])
    assert failing.exit_code == 2 and f"{path}:2: empty prompt" in failing.output
    skipping = runner.invoke(main, ["prompts", "stats", "--prompt-set", str(path), "--skip-invalid"])
    assert skipping.exit_code == 0, skipping.output
    assert "2 invalid rows skipped: 1 empty prompt; 1 unknown hazard 'nope'" in skipping.output


@pytest.mark.skipif(not AILUMINATE_DEMO.exists(), reason="shared AILuminate demo set not present")
def test_run_on_the_ailuminate_demo_file_samples_ten_per_hazard(tmp_path, tiny_llama):
    args = ["run", "--sut", f"hf:{tiny_llama}", "--prompt-set", str(AILUMINATE_DEMO), "--max-items", "120"]
    args += ["--max-new-tokens", "2", "--batch-size", "40", "--run-dir", str(tmp_path)]
    result = CliRunner(env=WIDE).invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads(next(tmp_path.glob("*/record.json")).read_text())
    hazards = record["scores"][0]["hazards"]
    assert len(hazards) == 12 and all(h["n"] == 10 for h in hazards)
    assert all(set(h["personas"]) == {"skilled", "unskilled"} for h in hazards)
