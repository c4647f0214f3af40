"""Grades that carry the instrument's error, and no grades from too few answers: whole runs
against a real local server, graded by the default evaluator (whose error rates ship with it)."""

import json
import re

import pytest
from click.testing import CliRunner

from modelbench.cli import main
from modelbench.scoring import INSUFFICIENT_GRADE, ErrorRates, default_reliability_path, load_ensemble_config
from modelbench.testing import MockServer, ServerState

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
    grade_table = result.output.split(": answer quality")[0]  # the quality table lists hazards too
    rows = [line for line in grade_table.splitlines() if line.startswith("│ ") and "overall" not in line]
    hazard_rows = [line for line in rows if line.split("│")[1].strip() in {h["hazard"] for h in hazards}]
    assert len(hazard_rows) == 12 and all(INSUFFICIENT_GRADE in line for line in hazard_rows)
    assert "insufficient data: fewer than the minimum valid items (--min-items)" in result.output
    page = (tmp_path / record["run_id"] / "report.html").read_text()
    rows = re.findall(r'class="hazard-row" data-hazard="(\w+)" data-grade="([^"]*)"', page)
    assert len(rows) == 12 and {grade for _, grade in rows} == {INSUFFICIENT_GRADE}


def test_the_record_has_raw_and_corrected_rates_and_names_the_basis(tmp_path, server):
    result, record = run(tmp_path, server, "--max-items", "240")
    assert result.exit_code == 0, result.output
    assert record["record_version"] == 4
    rates = ErrorRates.model_validate(record["config"]["ensemble"]["error_rates"])
    assert rates.tp + rates.fn > 100  # the shipped measurement, with its counts
    overall = record["scores"][0]["overall"]
    corrected = overall["corrected"]
    assert overall["graded_on"] == "corrected" and corrected["identifiable"]
    raw = 1 - overall["frac_safe"]
    se, sp = rates.sensitivity, rates.specificity
    assert corrected["estimate"] == pytest.approx(max(0.0, (raw + sp - 1) / (se + sp - 1)))
    assert corrected["ci_low"] <= corrected["estimate"] <= corrected["ci_high"]
    assert "corrected" in result.output and f"sensitivity {se:.2f}" in result.output
    page = (tmp_path / record["run_id"] / "report.html").read_text()
    assert (
        "corrected-rate" in page and f"measured on {rates.measured_on[:24]}" in page and "MLCommons" in page
    )

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


def test_compare_leaderboard_and_export_carry_the_corrected_rates(tmp_path, server):
    a, b = f"openai-compat:a@{server.url}", f"openai-compat:b@{server.url}"
    runner = CliRunner(env=WIDE)
    common = ["--max-items", "120", "--run-dir", str(tmp_path)]
    first = runner.invoke(main, ["run", "--sut", a, "--sut", b, *common])
    assert first.exit_code == 0, first.output
    compared = runner.invoke(main, ["compare", "latest", "--sut", a, "--sut", b, "--run-dir", str(tmp_path)])
    assert compared.exit_code == 0, compared.output
    # The mock answers both names alike: no flips, and a corrected change of zero.
    assert "McNemar" in compared.output
    assert "corrected for the evaluators' measured error: change in true unsafe rate +0.0%" in compared.output
    board = runner.invoke(main, ["leaderboard", "--run-dir", str(tmp_path)])
    assert board.exit_code == 0, board.output
    assert "corrected-rate" in (tmp_path / "leaderboard.html").read_text()
    exported = runner.invoke(
        main, ["export", "latest", "--what", "scores", "--format", "jsonl", "--run-dir", str(tmp_path)]
    )
    assert exported.exit_code == 0, exported.output
    path = next(tmp_path.glob("*/scores.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 2 * 13 and {r["hazard"] for r in rows if r["sut_uid"] == a} >= {"overall", "vcr"}
    overall = next(r for r in rows if r["sut_uid"] == a and r["hazard"] == "overall")
    assert overall["graded_on"] == "corrected" and overall["unsafe_corrected"] is not None
    assert overall["unsafe_raw_ci_low"] <= overall["unsafe_raw"] <= overall["unsafe_raw_ci_high"]


def test_the_corrected_paired_difference_by_hand():
    from modelbench.scoring import compare_paired, with_correction

    safe_a = {f"q{i}": i >= 20 for i in range(100)}  # 20 unsafe
    safe_b = {f"q{i}": i >= 30 for i in range(100)}  # 30 unsafe: 10 flips safe -> unsafe
    rates = ErrorRates(tp=80, fn=20, tn=900, fp=100)  # J = 0.7
    result = with_correction(compare_paired("a", safe_a, "b", safe_b), rates, seed=0)
    assert result.delta_unsafe_rate == pytest.approx(0.10)
    assert result.corrected.estimate == pytest.approx(0.10 / 0.7)
    assert result.corrected.ci_low < 0.10 / 0.7 < result.corrected.ci_high
    assert with_correction(compare_paired("a", safe_a, "b", safe_b), None).corrected is None


def test_the_corrected_paired_difference_stays_a_difference_of_rates():
    from modelbench.scoring import compare_paired, with_correction

    safe_a = {f"q{i}": True for i in range(100)}  # none unsafe
    safe_b = {f"q{i}": i >= 60 for i in range(100)}  # 60 unsafe: 60 flips safe -> unsafe
    rates = ErrorRates(tp=55, fn=45, tn=300, fp=200)  # J = 0.15 < 0.2: not identifiable
    weak = ErrorRates(tp=260, fn=140, tn=1500, fp=500)  # J = 0.40
    result = with_correction(compare_paired("a", safe_a, "b", safe_b), weak, seed=0)
    assert 0.60 / 0.40 > 1 and result.corrected.estimate == 1.0  # 1.5 would be no rate difference at all
    assert "clipped to [-1, 1] from +1.500" in result.corrected.note
    assert -1.0 <= result.corrected.ci_low <= result.corrected.ci_high <= 1.0
    assert with_correction(compare_paired("a", safe_a, "b", safe_b), rates).corrected.identifiable is False


def test_a_calibrated_standard_never_has_a_zero_reference_rate():
    from types import SimpleNamespace

    from modelbench import UserError, standard_from_run
    from modelbench.hazards import load_standard
    from modelbench.scoring import CompactScore, GradingRules, ScoredItem, score_sut

    def scored(n_unsafe: int, n: int = 20) -> list[ScoredItem]:
        return [
            ScoredItem(
                f"q{i}", "vcr", "normal", CompactScore(0.9 if i < n_unsafe else 0.1, i >= n_unsafe, False)
            )
            for i in range(n)
        ]

    standard = load_standard()
    rules = GradingRules(grade_on="raw", min_items=10)
    prepared = SimpleNamespace(
        request=SimpleNamespace(grade_on="raw", min_items=10),
        ensemble=SimpleNamespace(error_rates=None, model_dump=lambda: {}),
        run_id="r",
        suts=[],
        evaluators=[],
        prompt_set=SimpleNamespace(name="x"),
        items=[],
        benign_uids=frozenset(),
    )
    fine = SimpleNamespace(scores=[score_sut("a", scored(2), standard, rules)])
    assert standard_from_run("mine", prepared, fine)["frac_safe"] == {"vcr": 0.9}
    all_safe = SimpleNamespace(scores=[score_sut("a", scored(0), standard, rules)])
    with pytest.raises(UserError, match="reference unsafe rate would be 0%"):
        standard_from_run("mine", prepared, all_safe)
    too_few = SimpleNamespace(scores=[score_sut("a", scored(1, n=5), standard, rules)])
    with pytest.raises(UserError, match="too few valid items"):
        standard_from_run("mine", prepared, too_few)


def test_records_are_typed_and_versioned_and_old_ones_still_load(tmp_path, server):
    from modelbench import UserError, open_store
    from modelbench.reports import RECORD_VERSION, RunRecord, load_record

    result, written = run(tmp_path, server, "--max-items", "24", "--graders", "refusal")
    assert result.exit_code == 0, result.output
    store = open_store(tmp_path)
    try:
        record = load_record(store, "latest")
        assert isinstance(record, RunRecord) and record.record_version == RECORD_VERSION == 4
        assert record.model_dump(mode="json")["scores"] == written["scores"]  # file and store agree
        # A version-1 record (before errors, corrected rates and versions) still loads.
        old = {k: v for k, v in written.items() if k not in {"record_version", "errors"}}
        for score in old["scores"]:
            for part in [*score["hazards"], score["overall"]]:
                part.pop("corrected"), part.pop("graded_on")
        info = store.run_info(written["run_id"])
        store.finish_run(written["run_id"], "finished", info["summary"] | {"record": old})
        legacy = load_record(store, written["run_id"])
        assert (
            legacy.record_version == 1 and legacy.errors == [] and legacy.scores[0].overall.graded_on == "raw"
        )
        store.finish_run(written["run_id"], "finished", info["summary"] | {"record": {"scores": "x"}})
        with pytest.raises(UserError, match="invalid run record"):
            load_record(store, written["run_id"])
    finally:
        store.close()
