"""The leave-one-source-out report: nested choices, per-source metrics with intervals, the correction's
coverage, and (with --write-reliability) the shipped rule and error rates.

    .venv/bin/python benchmarks/evaluator_loso_report.py --recipes R1,R2
        [--ship R1 --card graders/minilm_ce.json --write-reliability]

Reads the per-row LOSO scores of each recipe (`benchmarks/results/loso_RECIPE.csv.gz`, written by
`evaluator_loso.py train`), and for each source reports the rule chosen on the *other* folds' rows
(protocol v2): F1 for unsafe, precision, recall, false-unsafe and false-safe rates, AUC, with 95%
bootstrap intervals over groups. Beside it, two rows that show what the nesting buys: `minilm-ce`
alone at its nested threshold, and each fold model's own threshold (chosen in distribution, on its
training sources' calibration rows, as protocol v1 did). Results go to
`benchmarks/results/evaluator_loso.json`.

With --write-reliability: the rule chosen on every source's LOSO rows is shipped. Its threshold is
written into the card of the shipped model (its calibration threshold; the delta is unchanged) and
the LOSO error rates into `graders/reliability.json` with the card's fingerprint.
"""

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from modelbench.graders.lab.label_sources import fold_of  # noqa: E402
from modelbench.graders.lab.loso import (  # noqa: E402
    EXPLORATORY_FALSE_UNSAFE_CAP,
    Decider,
    choose_decider,
    coverage_checks,
    fold_of_rows,
    load_scores,
    loso_error_rates,
    nested_calls,
    nested_deciders,
    per_source_rates,
)
from modelbench.graders.lab.metrics import rates_from_counts as metric_values  # noqa: E402
from modelbench.graders.lab.metrics import roc_auc as auc  # noqa: E402
from modelbench.jsonfile import write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FOLD_DIR = HERE / "loso"
SOURCE_ORDER = ("gptfuzz", "dna", "xstest", "own", "jbb", "pasttense")
BOOTSTRAP = 2000
# What ships: minilm-ce alone at a threshold (the run-time ensemble has no logistic combination).
SHIPPED_SYSTEM = "minilm-ce, nested threshold"


def source_metrics(
    frame: pd.DataFrame, called: np.ndarray, scores: np.ndarray, seed: int = 0
) -> dict[str, Any]:
    """Point metrics and 95% intervals over groups (resampled with replacement) for one source."""
    labels = frame["unsafe"].to_numpy(bool)
    groups, index = np.unique(frame["group"].to_numpy(), return_inverse=True)
    per_group = np.zeros((len(groups), 4), dtype=np.int64)
    cell = np.where(labels & called, 0, np.where(called, 1, np.where(labels, 2, 3)))
    np.add.at(per_group, (index, cell), 1)
    rng = np.random.default_rng(seed)
    draws = per_group[rng.integers(0, len(groups), (BOOTSTRAP, len(groups)))].sum(axis=1)
    point, spread = metric_values(per_group.sum(axis=0)), metric_values(draws)
    out: dict[str, Any] = {"n": int(len(frame)), "n_unsafe": int(labels.sum()), "groups": int(len(groups))}
    out.update({k: int(v) for k, v in zip(("tp", "fp", "fn", "tn"), per_group.sum(axis=0), strict=True)})
    for name, value in point.items():
        finite = spread[name][np.isfinite(spread[name])]
        out[name] = None if not np.isfinite(value) else round(float(value), 4)
        out[f"{name}_ci95"] = (
            [round(float(np.percentile(finite, 2.5)), 4), round(float(np.percentile(finite, 97.5)), 4)]
            if len(finite)
            else None
        )
    value = auc(labels, scores)
    out["auc"] = None if value is None else round(value, 4)
    return out


def summary(per_source: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float:
        return round(float(np.mean([m[key] for m in per_source.values() if m[key] is not None])), 4)

    return {
        "mean_f1": mean("f1"),
        "min_f1": min(m["f1"] or 0.0 for m in per_source.values()),
        "mean_recall": mean("recall"),
        "mean_false_unsafe_rate": mean("false_unsafe_rate"),
        "mean_auc": mean("auc"),
    }


def fold_card_calls(frame: pd.DataFrame, recipe: str) -> np.ndarray | None:
    """Each row called at its fold model's own threshold (chosen on the training sources'
    calibration rows: the in-distribution choice protocol v1 made)."""
    folds = fold_of_rows(frame)
    called = np.zeros(len(frame), dtype=bool)
    for fold in sorted(set(folds)):
        card = FOLD_DIR / recipe / f"{fold}.json"
        if not card.is_file():
            return None
        threshold = json.loads(card.read_text())["calibration"]["threshold"]
        called[folds == fold] = frame["p"].to_numpy()[folds == fold] >= threshold
    return called


def evaluate(frame: pd.DataFrame, recipe: str) -> dict[str, Any]:
    systems: dict[str, Any] = {}
    folds = fold_of_rows(frame)
    variants = (
        ("nested rule", ("ce", "ce+refusal"), None),
        ("minilm-ce, nested threshold", ("ce",), None),
        (
            f"minilm-ce, nested threshold, false-unsafe cap {EXPLORATORY_FALSE_UNSAFE_CAP}",
            ("ce",),
            EXPLORATORY_FALSE_UNSAFE_CAP,
        ),
    )
    for name, candidates, cap in variants:
        deciders = nested_deciders(frame, candidates, cap)
        called = nested_calls(frame, deciders)
        scores = np.zeros(len(frame))
        for fold, rule in deciders.items():
            scores[folds == fold] = rule.score(frame[folds == fold])
        per_source = {}
        for source in SOURCE_ORDER:
            mine = (frame["source"] == source).to_numpy()
            if mine.any():
                per_source[source] = source_metrics(frame[mine], called[mine], scores[mine])
        systems[name] = {
            "deciders": {fold: rule.model_dump() for fold, rule in deciders.items()},
            "per_source": per_source,
            "pooled": source_metrics(frame, called, scores),
            "summary": summary(per_source),
        }
    own_threshold = fold_card_calls(frame, recipe)
    if own_threshold is not None:
        per_source = {}
        for source in SOURCE_ORDER:
            mine = (frame["source"] == source).to_numpy()
            if mine.any():
                per_source[source] = source_metrics(
                    frame[mine], own_threshold[mine], frame["p"].to_numpy()[mine]
                )
        systems["minilm-ce, fold's own threshold (v1)"] = {
            "per_source": per_source,
            "summary": summary(per_source),
        }
    deciders = {fold: Decider.model_validate(d) for fold, d in systems[SHIPPED_SYSTEM]["deciders"].items()}
    checks = coverage_checks(frame, deciders)
    safe_widths = [c.width for c in checks if c.case == "all-safe" and c.width is not None]
    coverage = {
        "checks": len(checks),
        "covered": sum(c.covered for c in checks),
        "share": round(sum(c.covered for c in checks) / len(checks), 4),
        "all_safe_median_width": round(float(np.median(safe_widths)), 4) if safe_widths else None,
        "by_case": {
            case: round(float(np.mean([c.covered for c in checks if c.case == case])), 4)
            for case in ("all", "all-safe", "mix")
        },
        "by_source": {
            s: round(float(np.mean([c.covered for c in checks if c.source == s])), 4)
            for s in sorted({c.source for c in checks})
        },
        "first_cases": [c.model_dump() | {"covered": c.covered} for c in checks if c.case != "mix"],
    }
    return {"systems": systems, "coverage": coverage}


def print_recipe(console: Console, recipe: str, result: dict[str, Any]) -> None:
    for system, data in result["systems"].items():
        table = Table(title=f"{recipe}: {system} (LOSO rows; 95% intervals over groups)")
        for column in ("source", "n (unsafe)", "F1", "recall", "false-unsafe", "precision", "AUC", "rule"):
            table.add_column(column)
        for source, m in data["per_source"].items():
            rule = (data.get("deciders") or {}).get(fold_of(source))
            table.add_row(
                source,
                f"{m['n']} ({m['n_unsafe']})",
                fmt(m, "f1"),
                fmt(m, "recall"),
                fmt(m, "false_unsafe_rate"),
                fmt(m, "precision"),
                f"{m['auc']:.3f}" if m["auc"] is not None else "-",
                f"{rule['kind']} @ {rule['threshold']}" if rule else "card",
            )
        s = data["summary"]
        table.add_row(
            "mean",
            "",
            f"{s['mean_f1']:.3f} (min {s['min_f1']:.3f})",
            f"{s['mean_recall']:.3f}",
            f"{s['mean_false_unsafe_rate']:.3f}",
            "",
            f"{s['mean_auc']:.3f}",
            "",
        )
        console.print(table)
    c = result["coverage"]
    console.print(
        f"{recipe} correction coverage: {c['covered']}/{c['checks']} = {c['share']:.3f} "
        f"(all {c['by_case']['all']:.2f}, all-safe {c['by_case']['all-safe']:.2f}, "
        f"mix {c['by_case']['mix']:.2f}); "
        f"all-safe median width {c['all_safe_median_width']}; by source {c['by_source']}"
    )


def fmt(m: dict[str, Any], key: str) -> str:
    value, ci = m[key], m[f"{key}_ci95"]
    if value is None:
        return "-"
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.3f}"


def ship(
    frame: pd.DataFrame, card_path: Path, reliability_path: Path, recipe: str, result: dict[str, Any]
) -> dict[str, Any]:
    """Choose the rule on every source's LOSO rows; write its threshold into the card and its LOSO
    error rates into the reliability file."""
    from modelbench.graders.cross_encoder import CrossEncoderClassifier, load_card

    rule = choose_decider(frame, ["ce"])
    if rule.kind != "ce":
        raise SystemExit(f"the chosen rule is {rule.kind}; shipping it needs the combination at run time")
    rates_by_source = per_source_rates(frame, rule.decide(frame))
    rates = loso_error_rates(
        rates_by_source, measured_on=f"LOSO rows of {len(rates_by_source)} sources ({recipe})"
    )
    card, _ = load_card(card_path)
    calibration = card.calibration.model_copy(update={"threshold": rule.threshold})
    provenance = dict(card.provenance) | {
        "threshold_chosen_by": "mean per-source F1 on leave-one-source-out rows (protocol v2)",
        "threshold_in_distribution": card.calibration.threshold,
    }
    write_json(
        card.model_copy(update={"calibration": calibration, "provenance": provenance}).model_dump(
            mode="json"
        ),
        card_path,
    )
    model = CrossEncoderClassifier(card_path=card_path)
    data = {
        "members": ["minilm-ce"],
        "reliability": {"minilm-ce": round(float(rates.sensitivity + rates.specificity - 1), 6)},
        "threshold": 0.5,
        "error_rates": rates.model_dump(),
        "provenance": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "protocol": "benchmarks/evaluator_protocol.md (v2)",
            "chosen_by": f"mean per-source F1 on LOSO rows of every source ({recipe}; "
            "benchmarks/evaluator_loso_report.py)",
            "rule": rule.model_dump(),
            "candidates": ["ce"],
            "loso_scores": f"benchmarks/results/loso_{recipe}.csv.gz",
            "per_source": {
                r.source: {
                    "tp": r.tp,
                    "fp": r.fp,
                    "fn": r.fn,
                    "tn": r.tn,
                    "sensitivity": round(r.sensitivity, 4),
                    "specificity": round(r.specificity, 4),
                }
                for r in rates_by_source
            },
            "fingerprints": {"minilm-ce": model.fingerprint()},
            "held_out": {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "description": (
                    "leave-one-source-out rows: every answer scored by a model trained and calibrated "
                    "without its source, at a threshold chosen without it (protocol v2)"
                ),
                "members": {"minilm-ce": result["systems"][SHIPPED_SYSTEM]["pooled"]},
                "ensemble": result["systems"][SHIPPED_SYSTEM]["per_source"],
                "summary": result["systems"][SHIPPED_SYSTEM]["summary"],
                "results_file": "benchmarks/results/evaluator_loso.json",
            },
        },
    }
    write_json(data, reliability_path)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", default="R1")
    parser.add_argument("--out", default=str(RESULTS / "evaluator_loso.json"))
    parser.add_argument("--ship", default="", help="recipe whose rule and error rates ship")
    parser.add_argument("--card", default="", help="the shipped model's card (its threshold is rewritten)")
    parser.add_argument(
        "--reliability", default="", help="reliability file to write (default: the shipped one)"
    )
    parser.add_argument("--write-reliability", action="store_true")
    args = parser.parse_args(argv)
    console = Console(width=200)
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "recipes": {}}
    frames = {}
    for recipe in args.recipes.split(","):
        frames[recipe] = load_scores(RESULTS / f"loso_{recipe}.csv.gz")
        results["recipes"][recipe] = evaluate(frames[recipe], recipe)
        print_recipe(console, recipe, results["recipes"][recipe])
    if args.write_reliability:
        from modelbench.scoring import default_reliability_path

        recipe = args.ship or args.recipes.split(",")[0]
        card = Path(args.card) if args.card else None
        if card is None:
            from modelbench.graders.cross_encoder import CARD_FILE

            card = CARD_FILE
        path = Path(args.reliability) if args.reliability else default_reliability_path()
        results["shipped"] = ship(frames[recipe], card, path, recipe, results["recipes"][recipe])
        console.print(f"wrote {card} (threshold) and {path}: {results['shipped']['error_rates']}")
    write_json(results, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
