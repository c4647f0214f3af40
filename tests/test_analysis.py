"""Grade stability, paired comparison, calibrated standards, compare and export."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from modelbench.cli import main
from modelbench.graders import DEFAULT_GRADERS
from modelbench.scoring import agresti_min_interval, compare_paired, grade_stability, mcnemar_exact
from modelbench.testing import MockServer, ServerState

WIDE = {"COLUMNS": "200"}


def grade_by_rate(u: float) -> str:
    return "Good" if u <= 0.5 else "Poor"


def test_stability_is_one_when_every_verdict_is_certain_and_alike():
    for seed in range(5):
        assert grade_stability(np.zeros(50), "Good", grade_by_rate, draws=500, seed=seed) == 1.0
        assert grade_stability(np.ones(50), "Poor", grade_by_rate, draws=500, seed=seed) == 1.0


def test_stability_lies_in_unit_interval_and_is_seeded():
    for seed in range(20):
        p = np.random.default_rng(seed).random(40)
        value = grade_stability(p, "Good", grade_by_rate, draws=300, seed=seed)
        assert 0.0 <= value <= 1.0
        assert value == grade_stability(p, "Good", grade_by_rate, draws=300, seed=seed)
    assert grade_stability([], "Good", grade_by_rate) is None


def test_stability_matches_the_binomial_for_identical_items():
    # 10 items at p=0.5; Good holds when at most 5 are unsafe: P = 638/1024 = 0.623.
    value = grade_stability([0.5] * 10, "Good", grade_by_rate, draws=20000, seed=1)
    assert value == pytest.approx(638 / 1024, abs=0.015)


def test_stability_counts_which_items_were_sampled():
    """Ten certain verdicts, five unsafe: the evaluators have no doubt, but another sample of ten
    items could well hold six unsafe answers. Resampling makes that Binomial(10, 0.5)."""
    certain = [1.0] * 5 + [0.0] * 5
    value = grade_stability(certain, "Good", grade_by_rate, draws=20000, seed=1)
    assert value == pytest.approx(638 / 1024, abs=0.015)


def test_mcnemar_and_paired_interval_hand_computed():
    # b=2, c=8: two-sided exact p = 2 * P(X <= 2 | n=10, 1/2) = 2 * 56/1024.
    assert mcnemar_exact(2, 8) == pytest.approx(112 / 1024)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == pytest.approx(1.0)
    # Agresti-Min, b=2, c=8, n=100: b*=2.5, c*=8.5, n*=102; delta*=-6/102;
    # se = sqrt(11 - 36/102)/102.
    low, high = agresti_min_interval(2, 8, 100)
    delta, se = -6 / 102, (11 - 36 / 102) ** 0.5 / 102
    assert low == pytest.approx(delta - 1.959964 * se, abs=1e-6)
    assert high == pytest.approx(delta + 1.959964 * se, abs=1e-6)


def test_compare_paired_counts_flips_on_shared_items_only():
    a = {"1": True, "2": True, "3": False, "4": False, "5": True, "only-a": True}
    b = {"1": True, "2": False, "3": True, "4": False, "5": False, "only-b": False}
    result = compare_paired("dense", a, "sparse", b)
    assert result.n == 5 and result.safe_to_unsafe == 2 and result.unsafe_to_safe == 1
    assert result.unsafe_a == 2 and result.unsafe_b == 3
    assert result.delta_unsafe_rate == pytest.approx(1 / 5)
    assert result.ci_low < result.delta_unsafe_rate < result.ci_high
    assert result.mcnemar_p == pytest.approx(1.0)


@pytest.fixture(scope="module")
def api_server():
    with MockServer(ServerState(refuse_fraction=0.6, record_requests=False)) as server:
        yield server


def test_calibrate_then_the_reference_sut_grades_good_or_better(tmp_path, api_server, tiny_llama):
    runner = CliRunner(env=WIDE)
    api = f"openai-compat:mock@{api_server.url}"
    # 5 items per hazard: below the default minimum for a grade, so the minimum is lowered here.
    common = ["--max-items", "60", "--run-dir", str(tmp_path), "--max-new-tokens", "3", "--min-items", "5"]
    result = runner.invoke(
        main, ["calibrate", "--sut", api, "--sut", f"hf:{tiny_llama}", "--name", "mine", *common]
    )
    assert result.exit_code == 0, result.output
    # The printed hint works as given: the standard is found by name under the same --run-dir.
    assert f"modelbench run --standards mine --run-dir {tmp_path}" in " ".join(result.output.split())
    standard = json.loads((tmp_path / "standards" / "mine.json").read_text())
    per_sut = standard["provenance"]["per_sut_frac_safe"]
    assert set(per_sut) == {api, f"hf:{tiny_llama}"}
    for hazard, value in standard["frac_safe"].items():
        assert value == min(v[hazard] for v in per_sut.values())
    assert set(DEFAULT_GRADERS) == set(standard["provenance"]["evaluator"])
    for sut in (api, f"hf:{tiny_llama}"):
        result = runner.invoke(main, ["run", "--sut", sut, "--standards", "mine", *common])
        assert result.exit_code == 0, result.output
        record = json.loads(sorted(tmp_path.glob("*/record.json"))[-1].read_text())
        grades = [h["grade"] for h in record["scores"][0]["hazards"]]
        assert set(grades) <= {"Good", "Very Good", "Excellent"}, grades
        assert record["config"]["standard"]["name"] == "mine"


def test_against_a_calibrated_standard_a_worse_sut_grades_fair_or_poor(tmp_path, api_server):
    """The test above cannot fail by construction (a reference SUT is never worse than the least
    safe reference). Here the reference refuses 60% of prompts and another SUT none: graded on
    the same items against that standard, the reference grades Good or better overall and the
    other Fair or Poor (its unsafe rate is 2.5 times the reference's)."""
    runner = CliRunner(env=WIDE)
    common = ["--max-items", "60", "--run-dir", str(tmp_path), "--graders", "refusal", "--min-items", "5"]
    reference = f"openai-compat:mock@{api_server.url}"
    result = runner.invoke(main, ["calibrate", "--sut", reference, "--name", "ref", *common])
    assert result.exit_code == 0, result.output
    with MockServer(ServerState(refuse_fraction=0.0, record_requests=False)) as worse_server:
        worse = f"openai-compat:mock@{worse_server.url}"
        overall = {}
        for sut in (reference, worse):
            result = runner.invoke(main, ["run", "--sut", sut, "--standards", "ref", *common])
            assert result.exit_code == 0, result.output
            path = next(line.split()[1] for line in result.output.splitlines() if line.startswith("record: "))
            overall[sut] = json.loads(Path(path).read_text())["scores"][0]["overall"]
    assert overall[reference]["grade"] in {"Good", "Very Good", "Excellent"}, overall[reference]
    assert overall[worse]["grade"] in {"Fair", "Poor"}, overall[worse]


def test_calibrate_that_cannot_make_a_standard_after_its_work_exits_3_not_2(tmp_path, api_server):
    # 5 items per hazard against the default minimum of 10: answered, stored, but no standard.
    api = f"openai-compat:mock@{api_server.url}"
    args = [
        "calibrate",
        "--sut",
        api,
        "--graders",
        "refusal",
        "--max-items",
        "60",
        "--run-dir",
        str(tmp_path),
    ]
    result = CliRunner(env=WIDE).invoke(main, args)
    assert result.exit_code == 3, result.output
    assert "too few valid items" in result.output and "is stored" in result.output
    assert not (tmp_path / "standards").exists() and list(tmp_path.glob("*/record.json"))


def test_compare_and_export(tmp_path, api_server, tiny_llama):
    runner = CliRunner(env=WIDE)
    api = f"openai-compat:mock@{api_server.url}"
    args = ["run", "--sut", api, "--sut", f"hf:{tiny_llama}", "--max-items", "36", "--run-dir", str(tmp_path)]
    result = runner.invoke(main, [*args, "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
    compared = runner.invoke(
        main, ["compare", "latest", "--sut", api, "--sut", f"hf:{tiny_llama}", "--run-dir", str(tmp_path)]
    )
    assert compared.exit_code == 0, compared.output
    assert "McNemar exact p" in compared.output and "on 36 shared items" in compared.output
    missing = runner.invoke(
        main, ["compare", "latest", "--sut", api, "--sut", "nope", "--run-dir", str(tmp_path)]
    )
    assert missing.exit_code == 2 and "SUT 'nope' is not in run" in missing.output
    for fmt in ("csv", "parquet", "jsonl"):
        out = tmp_path / f"items.{fmt}"
        exported = runner.invoke(
            main, ["export", "latest", "--format", fmt, "--out", str(out), "--run-dir", str(tmp_path)]
        )
        assert exported.exit_code == 0, exported.output
        frame = {
            "csv": pd.read_csv,
            "parquet": pd.read_parquet,
            "jsonl": lambda p: pd.read_json(p, lines=True),
        }[fmt](out)
        assert len(frame) == 72 and set(frame["sut_uid"]) == {api, f"hf:{tiny_llama}"}
        assert {"prompt", "response", "p_unsafe", "is_safe", "member_verdicts", "hazard", "persona"} <= set(
            frame
        )
    nothing = runner.invoke(main, ["export", "nope", "--run-dir", str(tmp_path)])
    assert nothing.exit_code == 2 and "no run 'nope'" in nothing.output
