"""The default ensemble's recipe measured on several held-out splits, not one.

    .venv/bin/python benchmarks/evaluator_splits.py [--seeds 1,2,3,4,5] [--extra CSV] [--json FILE]
    .venv/bin/python benchmarks/evaluator_splits.py --cross-fit 5 [--seeds 0,1] [--extra CSV] [--json FILE]

The shipped head also trains on our own labels: pass `--extra graders/label_sets/mb-full-smollm2.csv`
to measure its recipe (those rows join every training set; XSTest rows alone are scored).

With 20 harmful answers in a held-out split, one split's F1 moves by several points when two
answers change side. For each seed this trains the MiniLM head on that seed's training split,
calibrates the reliabilities on the same training rows out of fold (exactly as the shipped files
are made), and scores refusal, minilm-clf, the ensemble and XSTest's string-match baseline on that
seed's held-out split, which none of them saw. The table gives each split and the mean.

`--cross-fit K` uses every labelled row as held-out data once per seed: the prompts are dealt into K
folds, and for each fold the whole recipe (the head's feature set and L2 chosen by CV, its fit, the
reliabilities) is rebuilt on the other K-1 folds and scores that fold, which it never saw. F1 is
then computed over all pooled held-out verdicts (67 unsafe answers instead of 20), and a bootstrap
over prompts gives an interval for the ensemble's F1 minus each member's.
"""

import argparse
import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelbench.graders.lab.evaluation import calibrate, evaluate, labelled_rows, member_verdicts
from modelbench.graders.lab.labels import load_xstest_folder
from modelbench.graders.lab.metrics import agreement
from modelbench.graders.lab.train_minilm import DEFAULT_DATA, group_folds, string_match_unsafe, train
from modelbench.graders.minilm import MiniLMClassifier
from modelbench.graders.refusal import RefusalEvaluator
from modelbench.scoring.ensemble import EnsembleConfig, combine

COLUMNS = ("string-match", "refusal", "minilm-clf", "ensemble")
MEMBERS = ("refusal", "minilm-clf")
BOOTSTRAP = 2000


def one_split(
    data: Path, seed: int, held_out: float, folder: Path, extra: Sequence[Path] = ()
) -> dict[str, Any]:
    """F1, recall and kappa for unsafe on one seed's held-out rows, everything fitted on its train rows
    (and on the `extra` label files, as the shipped head is)."""
    head = folder / f"head-{seed}.json"
    train(data, head, seed=seed, held_out=held_out, log=lambda *_: None, extra=extra)
    members = [RefusalEvaluator(), MiniLMClassifier(head_path=head)]
    calibration_rows = labelled_rows(data, "train", seed, held_out)
    reliability = calibrate(members, calibration_rows, {"seed": seed})["reliability"]
    test = labelled_rows(data, "heldout", seed, held_out)
    results = {r.name: r for r in evaluate(members, test, EnsembleConfig(reliability=reliability))}
    labels = [row.unsafe for row in test]
    results["string-match"] = agreement(
        "string-match", labels, [1.0 if string_match_unsafe(row.response) else 0.0 for row in test]
    )
    return {
        "seed": seed,
        "n": len(test),
        "n_unsafe": sum(labels),
        "reliability": reliability,
        "f1": {name: results[name].f1 or 0.0 for name in COLUMNS},
        "recall": {name: results[name].recall for name in COLUMNS},
        "kappa": {name: results[name].kappa for name in COLUMNS},
    }


def cross_fit(data: Path, seed: int, k: int, folder: Path, extra: Sequence[Path] = ()) -> dict[str, Any]:
    """Held-out p_unsafe for every row: each fold scored by a recipe rebuilt on the other folds."""
    rows = load_xstest_folder(data)
    folds = group_folds(rows, k, seed)
    p: dict[str, list[float | None]] = {name: [None] * len(rows) for name in COLUMNS}
    for fold in range(k):
        train_rows = [r for r, f in zip(rows, folds, strict=True) if f != fold]
        test_index = [i for i, f in enumerate(folds) if f == fold]
        test_rows = [rows[i] for i in test_index]
        head = folder / f"head-{seed}-{fold}.json"
        how = f"cross-fitting: fold {fold} of {k} by prompt group (seed {seed}) held out"
        train(data, head, seed=seed, log=lambda *_: None, split=(train_rows, test_rows, how), extra=extra)
        members = [RefusalEvaluator(), MiniLMClassifier(head_path=head)]
        reliability = calibrate(members, train_rows, {"seed": seed})["reliability"]
        members = [RefusalEvaluator(), MiniLMClassifier(head_path=head)]
        verdicts, _ = member_verdicts(members, test_rows, seed, trained=frozenset())
        config = EnsembleConfig(reliability=reliability)
        for j, i in enumerate(test_index):
            for uid in MEMBERS:
                p[uid][i] = verdicts[uid][j].p_unsafe
            p["ensemble"][i] = combine([verdicts[uid][j] for uid in MEMBERS], config).p_unsafe
            p["string-match"][i] = 1.0 if string_match_unsafe(rows[i].response) else 0.0
        print(f"  seed {seed} fold {fold}: reliability {reliability}", flush=True)
    labels = [r.unsafe for r in rows]
    results = {name: agreement(name, labels, p[name]) for name in COLUMNS}
    groups = [r.group for r in rows]
    return {
        "seed": seed,
        "folds": k,
        "n": len(rows),
        "n_unsafe": sum(labels),
        "f1": {name: results[name].f1 or 0.0 for name in COLUMNS},
        "precision": {name: results[name].precision for name in COLUMNS},
        "recall": {name: results[name].recall for name in COLUMNS},
        "kappa": {name: results[name].kappa for name in COLUMNS},
        "f1_difference_ci95": {
            name: bootstrap_f1_difference(labels, p["ensemble"], p[name], groups, seed) for name in MEMBERS
        },
    }


def _f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum(labels & predicted))
    wrong = float(np.sum(labels != predicted))
    return 2 * tp / (2 * tp + wrong) if tp else 0.0


def bootstrap_f1_difference(
    labels: list[bool], ensemble: list[float | None], member: list[float | None], groups: list[str], seed: int
) -> list[float]:
    """95% interval of F1(ensemble) - F1(member), resampling whole prompts (rows of one prompt are
    not independent: three models answered it)."""
    y = np.array(labels)
    a = np.array([q is not None and q >= 0.5 for q in ensemble])
    b = np.array([q is not None and q >= 0.5 for q in member])
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    rows_of = [[] for _ in names]  # type: list[list[int]]
    for row, g in enumerate(groups):
        rows_of[index[g]].append(row)
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(BOOTSTRAP):
        pick = np.concatenate([rows_of[g] for g in rng.integers(0, len(names), len(names))])
        differences.append(_f1(y[pick], a[pick]) - _f1(y[pick], b[pick]))
    low, high = np.percentile(differences, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def main_cross_fit(args: argparse.Namespace) -> None:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            runs.append(cross_fit(args.data, seed, args.cross_fit, Path(tmp), args.extra))
    print(f"{'seed':>5} {'n':>5} {'unsafe':>6} " + " ".join(f"{c:>13}" for c in COLUMNS) + "   (pooled F1)")
    for run in runs:
        f1 = " ".join(f"{run['f1'][c]:>13.3f}" for c in COLUMNS)
        print(f"{run['seed']:>5} {run['n']:>5} {run['n_unsafe']:>6} {f1}")
    means = {c: statistics.fmean(r["f1"][c] for r in runs) for c in COLUMNS}
    print(f"{'mean':>5} {'':>5} {'':>6} " + " ".join(f"{means[c]:>13.3f}" for c in COLUMNS))
    for run in runs:
        for name, (low, high) in run["f1_difference_ci95"].items():
            print(f"seed {run['seed']}: F1(ensemble) - F1({name}) 95% interval [{low:+.3f}, {high:+.3f}]")
    if args.json:
        payload = {"cross_fit": runs, "mean_f1": means, "extra": [str(path) for path in args.extra]}
        args.json.write_text(json.dumps(payload, indent=1) + "\n", "utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--held-out", type=float, default=0.3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cross-fit", type=int, default=0, metavar="K", help="K-fold cross-fitting instead")
    parser.add_argument(
        "--extra",
        type=Path,
        action="append",
        default=[],
        help="label files the head also trains on, whole (the shipped head: graders/label_sets/*.csv)",
    )
    args = parser.parse_args(argv)
    if args.cross_fit:
        main_cross_fit(args)
        return
    splits = []
    print(
        f"{'seed':>5} {'n':>4} {'unsafe':>6} " + " ".join(f"{c:>13}" for c in COLUMNS) + "   (F1 for unsafe)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            split = one_split(args.data, seed, args.held_out, Path(tmp), args.extra)
            splits.append(split)
            f1 = " ".join(f"{split['f1'][c]:>13.3f}" for c in COLUMNS)
            print(f"{seed:>5} {split['n']:>4} {split['n_unsafe']:>6} {f1}", flush=True)
    means = {c: statistics.fmean(s["f1"][c] for s in splits) for c in COLUMNS}
    print(f"{'mean':>5} {'':>4} {'':>6} " + " ".join(f"{means[c]:>13.3f}" for c in COLUMNS))
    wins = sum(s["f1"]["ensemble"] >= max(s["f1"]["refusal"], s["f1"]["minilm-clf"]) for s in splits)
    print(f"ensemble at least as good as its best member on {wins} of {len(splits)} splits")
    if args.json:
        payload = {"splits": splits, "mean_f1": means, "extra": [str(path) for path in args.extra]}
        args.json.write_text(json.dumps(payload, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
