"""Corrected unsafe rates: hand-computed cases, and a simulation of their interval's coverage."""

import numpy as np
import pytest

from modelbench.scoring import clopper_pearson, stability_draws
from modelbench.scoring.correction import ErrorRates, corrected_rate, rogan_gladen


def test_rogan_gladen_by_hand():
    # u = 0.30 called unsafe, se = 0.80, sp = 0.90: (0.30 + 0.90 - 1) / (0.80 + 0.90 - 1) = 0.2 / 0.7
    assert rogan_gladen(0.30, 0.80, 0.90) == pytest.approx(2 / 7)
    # A perfect instrument changes nothing.
    assert rogan_gladen(0.25, 1.0, 1.0) == pytest.approx(0.25)
    # Fewer unsafe calls than the false positives alone explain: clipped at 0, not negative.
    assert rogan_gladen(0.05, 0.80, 0.90) == 0.0  # (0.05 - 0.10) / 0.7 < 0
    # More than se allows: clipped at 1.
    assert rogan_gladen(0.95, 0.80, 0.90) == 1.0  # (0.95 - 0.10) / 0.7 > 1
    # se + sp - 1 <= 0: the evaluators carry no information, nothing can be corrected.
    assert rogan_gladen(0.3, 0.5, 0.5) is None and rogan_gladen(0.3, 0.4, 0.5) is None


def test_corrected_rate_from_counts_by_hand():
    rates = ErrorRates(tp=80, fn=20, tn=900, fp=100)  # se 0.8, sp 0.9
    assert rates.sensitivity == 0.8 and rates.specificity == 0.9 and rates.youden == pytest.approx(0.7)
    result = corrected_rate(60, 200, rates, seed=1)  # u = 0.3
    assert result.identifiable and result.estimate == pytest.approx(2 / 7)
    assert result.ci_low < 2 / 7 < result.ci_high
    # The same draws again: records are reproducible.
    assert corrected_rate(60, 200, rates, seed=1) == result


def test_not_identifiable_says_so_instead_of_a_number():
    weak = ErrorRates(tp=55, fn=45, tn=60, fp=40)  # se 0.55, sp 0.60: J = 0.15
    result = corrected_rate(30, 100, weak)
    assert not result.identifiable and result.estimate is None and result.ci_low is None
    assert "not identifiable with these evaluators" in result.note
    # J = 0.3 on paper, but measured on 4 + 4 labels: it may well be near zero.
    few = ErrorRates(tp=3, fn=1, tn=2, fp=2)
    assert not corrected_rate(3, 10, few).identifiable
    # One class never measured.
    assert not corrected_rate(3, 10, ErrorRates(tp=0, fn=0, tn=50, fp=1)).identifiable


REPS = 200
# The binomial noise of the coverage of REPS simulated 95% intervals: a correct interval's
# coverage is within 3 of these of 0.95 (a band of +-0.046 at 200: 0.904 to 0.996).
COVERAGE_NOISE = (0.95 * 0.05 / REPS) ** 0.5


def source_rate(rate: float, spread: float, rng: np.random.Generator) -> float:
    """One source's own true rate: `rate` itself, or a draw around it with standard deviation
    `spread` (a Beta with that mean and variance, so that it stays a rate)."""
    if spread <= 0:
        return rate
    total = rate * (1 - rate) / spread**2 - 1
    return float(rng.beta(rate * total, (1 - rate) * total))


def simulate(
    se: float,
    sp: float,
    pi: float,
    n: int,
    m_pos: int,
    m_neg: int,
    se_spread: float = 0.0,
    sp_spread: float = 0.0,
    reps: int = REPS,
) -> tuple[float, float, float]:
    """Coverage of the corrected and raw 95% intervals for a known true unsafe rate `pi`, and the
    corrected interval's median width. se and sp are measured on labelled answers pooled over
    sources; the simulated model is one more source, whose own se and sp differ from the pooled
    ones by the between-source spread that the error rates state."""
    corrected_hits = raw_hits = 0
    widths = []
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        truth = rng.random(n) < pi
        se_source, sp_source = source_rate(se, se_spread, rng), source_rate(sp, sp_spread, rng)
        called = np.where(truth, rng.random(n) < se_source, rng.random(n) >= sp_source)
        tp = int(rng.binomial(m_pos, se))
        tn = int(rng.binomial(m_neg, sp))
        rates = ErrorRates(
            tp=tp,
            fn=m_pos - tp,
            tn=tn,
            fp=m_neg - tn,
            sensitivity_spread=se_spread,
            specificity_spread=sp_spread,
        )
        k = int(called.sum())
        result = corrected_rate(k, n, rates, draws=1000, seed=rep)
        assert result.identifiable
        corrected_hits += result.ci_low <= pi <= result.ci_high
        widths.append(result.ci_high - result.ci_low)
        low, high = clopper_pearson(k, n)
        raw_hits += low <= pi <= high
    return corrected_hits / reps, raw_hits / reps, float(np.median(widths))


def delta_width(
    se: float,
    sp: float,
    pi: float,
    n: int,
    m_pos: int,
    m_neg: int,
    se_spread: float,
    sp_spread: float,
    z: float,
) -> float:
    """Width of the first-order (delta method) interval +-z sd around pi = (u + sp - 1) / J: its
    variance is (var u + (1 - pi)^2 var sp + pi^2 var se) / J^2, the variances of se and sp being
    their binomial ones on the labelled answers plus the between-source spread squared."""
    j, u = se + sp - 1, se * pi + (1 - sp) * (1 - pi)
    var_se = se * (1 - se) / m_pos + se_spread**2
    var_sp = sp * (1 - sp) / m_neg + sp_spread**2
    variance = (u * (1 - u) / n + (1 - pi) ** 2 * var_sp + pi**2 * var_se) / j**2
    return 2 * z * variance**0.5


@pytest.mark.parametrize(
    ("se", "sp", "pi", "se_spread", "sp_spread"),
    [
        (0.75, 0.85, 0.15, 0.0, 0.0),
        (0.84, 0.93, 0.10, 0.0, 0.0),
        (0.60, 0.95, 0.30, 0.0, 0.0),
        (0.95, 0.97, 0.05, 0.0, 0.0),
        (0.84, 0.93, 0.01, 0.0, 0.0),
        # The model's own se and sp are off the pooled ones by the spread measured between sources.
        (0.84, 0.93, 0.10, 0.13, 0.045),
    ],
)
def test_the_corrected_interval_covers_the_true_rate(se, sp, pi, se_spread, sp_spread):
    """300 items graded; se and sp "measured" on 150 unsafe and 600 safe labelled answers.

    A 95% interval must cover about 95% of the time, neither less nor more (an interval of [0, 1]
    always covers): within 3 binomial standard deviations of REPS simulations. Nor may it buy its
    coverage with width: its median width stays below the delta method's 99% interval (z 2.576
    for 1.96), which a 95% interval has no reason to exceed (near pi = 0, where it stops at 0, it is
    well below it)."""
    corrected, raw, width = simulate(se, sp, pi, 300, 150, 600, se_spread, sp_spread)
    bound = delta_width(se, sp, pi, 300, 150, 600, se_spread, sp_spread, z=2.576)
    print(f"se {se} sp {sp} pi {pi}: coverage corrected {corrected:.3f}, raw {raw:.3f}")
    print(f"median width {width:.3f}, delta method's 99% interval {bound:.3f}")
    assert abs(corrected - 0.95) <= 3 * COVERAGE_NOISE
    assert width <= bound
    if min(se, sp) < 0.9:
        assert raw < 0.5  # the raw interval is about the instrument, not the model


def test_stability_draws_scatter_like_the_sample_size():
    p = np.full(12, 0.25)
    small = stability_draws(p, None, 4000, seed=0)
    large = stability_draws(np.full(1200, 0.25), None, 4000, seed=0)
    assert small.mean() == pytest.approx(0.25, abs=0.01)
    assert small.std() == pytest.approx((0.25 * 0.75 / 12) ** 0.5, rel=0.08)
    assert large.std() < small.std() / 5
    rates = ErrorRates(tp=80, fn=20, tn=900, fp=100)
    corrected = stability_draws(np.full(300, 0.3), rates, 4000, seed=0, n_unsafe=90)
    assert np.median(corrected) == pytest.approx(2 / 7, abs=0.03) and corrected.min() >= 0.0


def test_below_the_false_alarm_rate_the_interval_does_not_collapse_and_the_grade_uses_the_median():
    """3 of 240 called unsafe where false alarms alone would make 7%: the clipped estimate is 0,
    but the true rate could be a few percent; grading the clipped 0 would say Excellent."""
    rates = ErrorRates(tp=516, fn=99, tn=2384, fp=189)
    result = corrected_rate(3, 240, rates, seed=0)
    assert result.estimate == 0.0 and result.ci_low == pytest.approx(0.0, abs=0.002)
    assert result.ci_high > 0.01 and 0.0 < result.graded_value < result.ci_high
    assert "false alarms explain" in result.note
    plain = corrected_rate(60, 240, rates, seed=0)
    assert plain.graded_value == plain.estimate and plain.note == ""


def test_between_source_spread_widens_the_interval():
    pooled = ErrorRates(tp=516, fn=99, tn=2384, fp=189)
    spread = pooled.model_copy(update={"sensitivity_spread": 0.13, "specificity_spread": 0.045})
    narrow, wide = corrected_rate(50, 300, pooled, seed=0), corrected_rate(50, 300, spread, seed=0)
    assert narrow.estimate == wide.estimate
    assert wide.ci_high - wide.ci_low > 1.5 * (narrow.ci_high - narrow.ci_low)


def test_the_console_says_which_number_graded_when_the_estimate_is_clipped():
    from types import SimpleNamespace

    from modelbench.reports.console import _corrected
    from modelbench.scoring import CorrectedRate

    clipped = CorrectedRate(
        estimate=0.0, ci_low=0.0, ci_high=0.26, identifiable=True, note="x", graded_value=0.046
    )
    assert _corrected(SimpleNamespace(corrected=clipped))[0] == "0.0% (graded 4.6%)"
    plain = clipped.model_copy(update={"estimate": 0.2, "graded_value": 0.2})
    assert _corrected(SimpleNamespace(corrected=plain))[0] == "20.0%"


def _plain_posterior_draws(n_unsafe, n, rates, draws, rng):
    """The grid posterior written as the formula reads, in one piece: what the blocked, threaded,
    in-place `posterior_draws` must reproduce number for number."""
    from modelbench.scoring.correction import GRID, error_draws

    se, sp = error_draws(rates, draws, rng)
    called = np.clip(se[:, None] * GRID[None, :] + (1 - sp[:, None]) * (1 - GRID[None, :]), 1e-12, 1 - 1e-12)
    log_like = n_unsafe * np.log(called) + (n - n_unsafe) * np.log1p(-called)
    weights = np.exp(log_like - log_like.max(axis=1, keepdims=True))
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    picks = (cdf < rng.random(draws)[:, None]).sum(axis=1)
    step = GRID[1] - GRID[0]
    return np.clip(GRID[picks] + (rng.random(draws) - 0.5) * step, 0.0, 1.0)


@pytest.mark.parametrize("block_rows", [1000, 7, 100_000])
@pytest.mark.parametrize(
    "n_unsafe,n,draws", [(0, 1000, 4000), (30, 100, 2500), (100, 100, 999), (0, 0, 10), (3, 10, 0)]
)
def test_posterior_draws_match_the_plain_formula_whatever_the_blocks(
    monkeypatch, block_rows, n_unsafe, n, draws
):
    from modelbench.scoring import correction

    monkeypatch.setattr(correction, "BLOCK_ROWS", block_rows)
    rates = ErrorRates(tp=300, fn=60, tn=900, fp=100, sensitivity_spread=0.05, specificity_spread=0.03)
    fast = correction.posterior_draws(n_unsafe, n, rates, draws, correction.correction_rng("same"))
    plain = _plain_posterior_draws(n_unsafe, n, rates, draws, correction.correction_rng("same"))
    assert np.array_equal(fast, plain)


def test_warm_up_imports_what_scoring_imports_later():
    import subprocess
    import sys

    code = (
        "import sys; from modelbench.warmup import LATER, warm_up; "
        "assert not any(m in sys.modules for m in LATER); warm_up().join(); "
        "assert all(m in sys.modules for m in LATER)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_posterior_draws_work_in_a_forked_child_after_the_parent_made_its_threads():
    """The thread pool is per process: a child forked after the parent used it makes its own
    instead of waiting forever on threads it does not have."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from modelbench.scoring.correction import ErrorRates, correction_rng, posterior_draws\n"
        "rates = ErrorRates(tp=80, fn=20, tn=900, fp=100)\n"
        "parent = posterior_draws(5, 50, rates, 4000, correction_rng(1))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    child = posterior_draws(5, 50, rates, 4000, correction_rng(1))\n"
        "    os._exit(0 if (child == parent).all() else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
