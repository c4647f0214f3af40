"""Grades that carry the instrument's error, and no grades from too few answers: whole runs
against a real local server, graded by the default evaluator (whose error rates ship with it)."""

import json
import re

import pytest
from click.testing import CliRunner

from modelbench.cli import main
from modelbench.graders.correction import ErrorRates
from modelbench.graders.evaluation import default_reliability_path, load_ensemble_config
from modelbench.graders.scoring import INSUFFICIENT_GRADE
from modelbench.mock_server import MockServer, ServerState

WIDE = {"COLUMNS": "200"}


@pytest.fixture(scope="module")
def server():
    with MockServer(ServerState(refuse_fraction=0.7, record_requests=False)) as running:
        yield running


def run(tmp_path, server, *args: str):
    command = ["run", "--sut", f"openai-compat:m@{server.url}", "--run-dir", str(tmp_path), *args]
    result = CliRunner(env=WIDE).invoke(main, command)
    record = json.loads(
        sorted(tmp_path.glob("*/record.json"), key=lambda p: p.stat().st_mtime)[-1].read_text()
    )
    return result, record


def test_a_12_item_run_grades_no_hazard(tmp_path, server):
    result, record = run(tmp_path, server, "--max-items", "12")
    assert result.exit_code == 0, result.output  # too few items is not a failure of the run
    hazards = record["scores"][0]["hazards"]
    assert len(hazards) == 12 and {h["grade"] for h in hazards} == {INSUFFICIENT_GRADE}
    assert all(h["grade_stability"] is None and not h["grade_valid"] for h in hazards)
    rows = [line for line in result.output.splitlines() if line.startswith("│ ") and "overall" not in line]
    hazard_rows = [line for line in rows if line.split("│")[1].strip() in {h["hazard"] for h in hazards}]
    assert len(hazard_rows) == 12 and all(INSUFFICIENT_GRADE in line for line in hazard_rows)
    assert "insufficient data: fewer than the minimum valid items (--min-items)" in result.output
    page = (tmp_path / record["run_id"] / "report.html").read_text()
    rows = re.findall(r'class="hazard-row" data-hazard="(\w+)" data-grade="([^"]*)"', page)
    assert len(rows) == 12 and {grade for _, grade in rows} == {INSUFFICIENT_GRADE}


def test_the_record_has_raw_and_corrected_rates_and_names_the_basis(tmp_path, server):
    result, record = run(tmp_path, server, "--max-items", "240")
    assert result.exit_code == 0, result.output
    assert record["record_version"] == 2
    rates = ErrorRates.model_validate(record["config"]["ensemble"]["error_rates"])
    assert rates.tp + rates.fn > 100  # the shipped measurement, with its counts
    overall = record["scores"][0]["overall"]
    corrected = overall["corrected"]
    assert overall["graded_on"] == "corrected" and corrected["identifiable"]
    raw = 1 - overall["frac_safe"]
    se, sp = rates.sensitivity, rates.specificity
    assert corrected["estimate"] == pytest.approx(max(0.0, (raw + sp - 1) / (se + sp - 1)))
    assert corrected["ci_low"] <= corrected["estimate"] <= corrected["ci_high"]
    assert "corrected" in result.output and "sensitivity 0.84" in result.output
    page = (tmp_path / record["run_id"] / "report.html").read_text()
    assert "corrected-rate" in page and "measured on test rows" in page and "MLCommons" in page

    raw_result, raw_record = run(tmp_path, server, "--max-items", "240", "--grade-on", "raw")
    assert raw_result.exit_code == 0, raw_result.output
    assert raw_record["config"]["request"]["grade_on"] == "raw"
    assert raw_record["scores"][0]["overall"]["graded_on"] == "raw"
    # Same answers and verdicts (reused), same corrected numbers; only the basis of the grade moved.
    assert raw_record["scores"][0]["overall"]["corrected"] == corrected


def test_error_rates_belong_to_the_configuration_they_were_measured_on(tmp_path, server):
    shipped = load_ensemble_config(graders=["minilm-ce"])
    assert shipped.error_rates is not None
    assert load_ensemble_config(graders=["refusal"]).error_rates is None
    assert load_ensemble_config(graders=["minilm-ce", "refusal"]).error_rates is None
    retrained = {"minilm-ce": {"evaluator": "minilm-ce", "card_sha256": "another model"}}
    assert load_ensemble_config(graders=["minilm-ce"], fingerprints=retrained).error_rates is None
    assert json.loads(default_reliability_path().read_text())["error_rates"]["measured_on"]

    result, record = run(tmp_path, server, "--max-items", "240", "--graders", "refusal")
    assert result.exit_code == 0, result.output
    assert record["scores"][0]["overall"]["graded_on"] == "raw"
    assert record["scores"][0]["overall"]["corrected"] is None
    assert "error rates were not measured" in result.output
