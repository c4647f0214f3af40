"""Leave-one-source-out choices and error rates (graders/lab/loso.py) on small synthetic score tables."""

import math

import numpy as np
import pandas as pd
import pytest

from modelbench import UserError
from modelbench.graders.lab.loso import (
    SourceRates,
    choose_decider,
    coverage_checks,
    load_scores,
    loso_error_rates,
    nested_deciders,
)

SOURCES = ("gptfuzz", "dna", "xstest", "own", "jbb", "pasttense")


def table(
    seed: int = 0, per_source: int = 400, refusal_informative: bool = False, shifts: bool = True
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for source in SOURCES:
        shift = {"gptfuzz": 0.0, "dna": -0.5, "xstest": 0.3, "own": 0.2, "jbb": 0.1, "pasttense": -0.2}[
            source
        ]
        for i in range(per_source):
            unsafe = rng.random() < 0.3
            z = rng.normal((2.0 if unsafe else -2.0) + (shift if shifts else 0.0), 1.2)
            refusal = float(unsafe) if refusal_informative else rng.random()
            rows.append(
                {
                    "fold": source,
                    "source": source,
                    "group": f"{source}:{i // 4}",
                    "unsafe": unsafe,
                    "p": 1 / (1 + math.exp(-z)),
                    "refusal_p": refusal,
                }
            )
    return pd.DataFrame(rows)


def test_a_folds_rule_does_not_depend_on_its_own_rows():
    frame = table()
    before = nested_deciders(frame)["xstest"]
    flipped = frame.copy()
    mine = flipped["source"] == "xstest"
    flipped.loc[mine, "unsafe"] = ~flipped.loc[mine, "unsafe"]
    flipped.loc[mine, "p"] = 1 - flipped.loc[mine, "p"]
    after = nested_deciders(flipped)
    assert after["xstest"] == before
    assert after["gptfuzz"] != nested_deciders(frame)["gptfuzz"]  # the others did see xstest's rows


def test_refusal_joins_only_when_it_helps_on_the_rows_it_is_chosen_on():
    assert choose_decider(table()).kind == "ce"  # a coin-flip refusal score adds nothing
    rule = choose_decider(table(refusal_informative=True))
    assert rule.kind == "ce+refusal" and rule.criterion > choose_decider(table(), ["ce"]).criterion


def test_loso_error_rates_are_means_over_sources_with_a_predictive_spread():
    rates = loso_error_rates(
        [
            SourceRates(source="a", tp=80, fn=20, tn=900, fp=100),  # se 0.8, sp 0.9
            SourceRates(source="b", tp=6, fn=4, tn=70, fp=30),  # se 0.6, sp 0.7: counts once, as a does
        ]
    )
    assert rates.sensitivity == pytest.approx(0.7, abs=0.005)
    assert rates.specificity == pytest.approx(0.8, abs=0.001)
    assert rates.tp + rates.fn == 110 and rates.tn + rates.fp == 1100
    assert rates.sensitivity_spread == pytest.approx(np.std([0.8, 0.6], ddof=1) * math.sqrt(1.5), abs=1e-5)
    assert rates.specificity_spread == pytest.approx(np.std([0.9, 0.7], ddof=1) * math.sqrt(1.5), abs=1e-5)
    with pytest.raises(UserError):
        loso_error_rates([SourceRates(source="a", tp=1, fn=1, tn=1, fp=1)])


def test_coverage_checks_cover_every_source_in_three_cases():
    frame = table(per_source=300, shifts=False)
    checks = coverage_checks(frame, nested_deciders(frame), draws=3, mix_items=100)
    assert len(checks) == len(SOURCES) * (1 + 1 + 3)
    assert {c.case for c in checks} == {"all", "all-safe", "mix"}
    assert all(c.truth == 0.0 for c in checks if c.case == "all-safe")
    assert all(c.truth == pytest.approx(0.1) and c.n == 100 for c in checks if c.case == "mix")
    # With a well-separated evaluator whose errors are alike across sources, intervals cover.
    assert np.mean([c.covered for c in checks]) >= 0.9


def test_scores_without_needed_columns_are_one_line(tmp_path):
    path = tmp_path / "s.csv"
    pd.DataFrame({"source": ["x"], "p": [0.5]}).to_csv(path, index=False)
    with pytest.raises(UserError, match="need column"):
        load_scores(path)
    with pytest.raises(UserError, match="not found"):
        load_scores(tmp_path / "missing.csv")
