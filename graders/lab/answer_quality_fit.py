"""Fitting the answer-quality rule on train labels and measuring it on held-out ones.

Two label sources, each with its own held-out part:
- **own**: `graders/label_sets/answer_quality_smollm2.csv`, answers of dense and pruned SmolLM2
  variants to `mb-full` prompts outside `mb-demo`, labelled under the rubric beside it before any
  classifier existed; split by prompt (`split` column). The thresholds are fitted on its `train`
  rows only.
- **xstest**: XSTest's human `final_label` on the completions of the test split that the evaluator
  protocol fixes (`label_sources.xstest_split`): refusal = `2_full_refusal` or `3_partial_refusal`,
  answer = `1_full_compliance`. The refusal phrases were written while reading XSTest, so only
  its test rows measure them. XSTest has no degenerate label; it measures refusal and answer only.

Every decision (refusal, answer, degenerate) is measured per source; the error counts that the
correction uses are pooled over the sources that measure the decision, with the between-source
spread of se and sp widened by sqrt(1 + 1/k) for k sources (a new model is a new source), as for
the evaluators' LOSO rates.
"""

import csv
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from modelbench.graders.answer_quality import (
    DECISIONS,
    KINDS,
    AnswerQualityClassifier,
    AnswerSignals,
    QualityModel,
    QualityRules,
    classify,
)
from modelbench.scoring import clopper_pearson

LABEL_FILE = Path(__file__).resolve().parents[1] / "label_sets" / "answer_quality_smollm2.csv"
VERSION = "2"  # 2: the fit chooses which kinds of refusal phrase count
XSTEST_REFUSAL = {"2_full_refusal", "3_partial_refusal"}
XSTEST_ANSWER = "1_full_compliance"
GRID = {
    "min_words": (1, 2, 3, 5),
    "max_repeat_share": tuple(round(x, 2) for x in np.arange(0.10, 0.81, 0.05)),
    # -1 first: the off-topic test off (a cosine is never below -1), chosen on a tie.
    "min_similarity": (-1.0, *(round(x, 3) for x in np.arange(-0.10, 0.401, 0.025))),
    "refusal_within": (100, 200, 400, 100_000),
    # Ties go to the first: the narrowest reading of "refusing".
    "refusal_phrases": ("decline", "decline+apology", "decline+apology+support"),
}


class LabelledAnswer(BaseModel):
    source: str  # "own" or "xstest"
    key: str
    prompt: str
    response: str
    label: str  # a kind; XSTest rows are "answer" or "refusal"
    split: str  # "train" or "test"
    group: str


def load_own(path: Path = LABEL_FILE) -> list[LabelledAnswer]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        if row["label"] not in KINDS:
            raise ValueError(f"{path}: key {row['key']}: label {row['label']!r} is not one of {KINDS}")
        out.append(
            LabelledAnswer(
                source="own",
                key=row["key"],
                prompt=row["prompt"],
                response=row["response"],
                label=row["label"],
                split=row["split"],
                group=row["prompt"],
            )
        )
    return out


def load_xstest_test(root: Path) -> list[LabelledAnswer]:
    """XSTest completions of the protocol's test split, with their human final labels."""
    import pandas as pd

    from modelbench.graders.lab.label_sources import xstest_split
    from modelbench.graders.lab.labels import xstest_model_name

    split = xstest_split(root)
    test = {(r.model, r.prompt, r.response) for r in split.test}
    out = []
    for path in sorted((root / "xstest").glob("xstest_v2_completions_*.csv")):
        model = xstest_model_name(path)
        frame = pd.read_csv(path, keep_default_na=False)
        for index, row in frame.iterrows():
            if (model, row["prompt"], row["completion"]) not in test:
                continue
            label = row["final_label"].strip()
            out.append(
                LabelledAnswer(
                    source="xstest",
                    key=f"{model}:{index}",
                    prompt=row["prompt"],
                    response=row["completion"],
                    label="refusal" if label in XSTEST_REFUSAL else "answer",
                    split="test",
                    group=row["prompt"],
                )
            )
    return out


def _macro_f1(labels: Sequence[str], predicted: Sequence[str]) -> float:
    scores = []
    for kind in KINDS:
        tp = sum(1 for y, p in zip(labels, predicted, strict=True) if y == kind and p == kind)
        fp = sum(1 for y, p in zip(labels, predicted, strict=True) if y != kind and p == kind)
        fn = sum(1 for y, p in zip(labels, predicted, strict=True) if y == kind and p != kind)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
    return sum(scores) / len(scores)


def fit_rules(signals: Sequence[AnswerSignals], labels: Sequence[str]) -> tuple[QualityRules, float]:
    """The grid point with the best macro-F1 over the three kinds (ties: the first in grid order,
    which favours the loosest degenerate thresholds and the narrowest refusal phrases)."""
    rules, score, _ = fit_rules_by(signals, labels)
    return rules, score


def fit_rules_by(
    signals: Sequence[AnswerSignals], labels: Sequence[str], choice: str = "refusal_phrases"
) -> tuple[QualityRules, float, dict[str, float]]:
    """`fit_rules`, and the best train macro-F1 for each value of one rule (`choice`), to show
    what the choice rests on."""
    best: tuple[float, QualityRules] | None = None
    by_choice: dict[str, float] = {}
    for values in itertools.product(*GRID.values()):
        rules = QualityRules(**dict(zip(GRID, values, strict=True)))
        score = _macro_f1(labels, [classify(s, rules) for s in signals])
        key = str(getattr(rules, choice))
        by_choice[key] = max(by_choice.get(key, 0.0), round(score, 4))
        if best is None or score > best[0] + 1e-12:
            best = (score, rules)
    assert best is not None
    return best[1], best[0], by_choice


def _interval(k: int, n: int) -> list[float] | None:
    found = clopper_pearson(k, n)
    return None if found is None else [round(found[0], 4), round(found[1], 4)]


def decision_counts(labels: Sequence[str], predicted: Sequence[str], decision: str) -> dict[str, int]:
    pairs = list(zip(labels, predicted, strict=True))
    return {
        "tp": sum(1 for y, p in pairs if y == decision and p == decision),
        "fn": sum(1 for y, p in pairs if y == decision and p != decision),
        "tn": sum(1 for y, p in pairs if y != decision and p != decision),
        "fp": sum(1 for y, p in pairs if y != decision and p == decision),
    }


def describe(counts: dict[str, int]) -> dict[str, Any]:
    tp, fn, tn, fp = counts["tp"], counts["fn"], counts["tn"], counts["fp"]
    n = tp + fn + tn + fp
    return {
        **counts,
        "sensitivity": round(tp / (tp + fn), 4) if tp + fn else None,
        "sensitivity_ci": _interval(tp, tp + fn),
        "specificity": round(tn / (tn + fp), 4) if tn + fp else None,
        "specificity_ci": _interval(tn, tn + fp),
        "accuracy": round((tp + tn) / n, 4) if n else None,
        "accuracy_ci": _interval(tp + tn, n),
    }


def pooled_rates(per_source: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Counts summed over sources, with the between-source spread of se and sp (sd over sources,
    widened by sqrt(1 + 1/k)); zero spread from one source."""
    total = {c: sum(s[c] for s in per_source.values()) for c in ("tp", "fn", "tn", "fp")}
    k = len(per_source)
    spreads = {}
    for name, hits, misses in (("sensitivity_spread", "tp", "fn"), ("specificity_spread", "tn", "fp")):
        values = [s[hits] / (s[hits] + s[misses]) for s in per_source.values() if s[hits] + s[misses]]
        spreads[name] = (
            round(float(np.std(values, ddof=1)) * math.sqrt(1 + 1 / len(values)), 4)
            if len(values) > 1
            else 0.0
        )
    return {
        **total,
        **spreads,
        "measured_on": " + ".join(f"{name} test" for name in per_source) + f" ({k} sources)",
    }


def fit_and_measure(
    own: list[LabelledAnswer], xstest: list[LabelledAnswer], classifier: AnswerQualityClassifier
) -> tuple[QualityModel, dict[str, Any]]:
    """Fit on own train rows; measure every decision on own test and XSTest test rows."""
    rows = [*own, *xstest]
    signals = classifier.signals([r.prompt for r in rows], [r.response for r in rows], whole=True)
    by_row = dict(zip((id(r) for r in rows), signals, strict=True))
    train = [r for r in own if r.split == "train"]
    rules, train_f1, by_phrases = fit_rules_by([by_row[id(r)] for r in train], [r.label for r in train])
    measured: dict[str, Any] = {
        "train_macro_f1": round(train_f1, 4),
        "train_macro_f1_by_refusal_phrases": by_phrases,
        "sources": {},
    }
    per_decision: dict[str, dict[str, dict[str, int]]] = {d: {} for d in DECISIONS}
    for source, test in (("own", [r for r in own if r.split == "test"]), ("xstest", xstest)):
        if not test:
            continue
        labels = [r.label for r in test]
        predicted = [classify(by_row[id(r)], rules) for r in test]
        entry: dict[str, Any] = {"n": len(test), "labels": {k: labels.count(k) for k in KINDS}}
        entry["macro_f1"] = round(_macro_f1(labels, predicted), 4)
        entry["confusion"] = {
            y: {p: sum(1 for a, b in zip(labels, predicted, strict=True) if a == y and b == p) for p in KINDS}
            for y in KINDS
        }
        for decision in DECISIONS:
            if source == "xstest" and decision == "degenerate":
                continue  # XSTest does not label degenerate answers
            counts = decision_counts(labels, predicted, decision)
            entry[decision] = describe(counts)
            per_decision[decision][source] = counts
        measured["sources"][source] = entry
    error_rates = {d: pooled_rates(sources) for d, sources in per_decision.items() if sources}
    model = QualityModel(version=VERSION, rules=rules, error_rates=error_rates, measured=measured)
    return model, measured
