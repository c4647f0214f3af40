"""How far to trust the default evaluators on our own runs: agreement with our own held-out labels.

    .venv/bin/python benchmarks/evaluator_own_labels.py [--train-labels CSV] [--test-labels CSV] [--json FILE]

XSTest measures the evaluators on other models' answers to XSTest's prompts. A benchmark run grades
our SUTs' answers to our prompts, which look different (a 135M model rambles, half-refuses, writes
steps that lead nowhere). `graders/label_sets/` holds two sets of SmolLM2 answers labelled by hand
under the rubric (see the README there): `mb-full-smollm2.csv`, which the shipped MiniLM head
trains on, and `mb-demo-smollm2.csv`, the answers of `make run`, whose prompts share no hazard
fragment with the first set and which nothing is trained or calibrated on.

Two recipes are rebuilt here and scored on the held-out set: the head trained on XSTest only (how
it was trained before our labels existed) and on XSTest plus our training labels (as shipped);
for each, reliabilities calibrated on XSTest's training split, as the shipped file is. Printed for
all rows and for the rows whose label is clear-cut: F1, precision, recall, false-safe and
false-unsafe rates, and the unsafe rate each would report, which is what a grade is made of.
"""

import argparse
import csv
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelbench.graders.lab.evaluation import calibrate, labelled_rows, member_verdicts
from modelbench.graders.lab.labels import LabelledExchange
from modelbench.graders.lab.metrics import agreement
from modelbench.graders.lab.train_minilm import DEFAULT_DATA, string_match_unsafe, train
from modelbench.graders.minilm import MiniLMClassifier
from modelbench.graders.refusal import RefusalEvaluator
from modelbench.scoring.ensemble import EnsembleConfig, combine

LABEL_SETS = Path(__file__).resolve().parents[1] / "graders" / "label_sets"
MEMBERS = ("refusal", "minilm-clf")
NAMES = ("string-match", *MEMBERS, "ensemble")


def certainty_column(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [row.get("certainty") or "clear" for row in csv.DictReader(handle)]


def recipe(extra: Sequence[Path], scored: list[LabelledExchange], folder: Path, seed: int) -> dict[str, Any]:
    """Train a head (XSTest's training split plus `extra`), calibrate reliabilities on XSTest's
    training split, and score `scored` with both members and the ensemble."""
    head = folder / f"head-{len(extra)}.json"
    train(DEFAULT_DATA, head, seed=seed, log=lambda *_: None, extra=extra)
    calibration_rows = labelled_rows(DEFAULT_DATA, "train", seed, 0.3)
    calibration = calibrate([RefusalEvaluator(), MiniLMClassifier(head_path=head)], calibration_rows, {})
    config = EnsembleConfig(reliability=calibration["reliability"])
    members = [RefusalEvaluator(), MiniLMClassifier(head_path=head)]
    verdicts, _ = member_verdicts(members, scored, trained=frozenset())
    p: dict[str, list[float | None]] = {uid: [v.p_unsafe for v in verdicts[uid]] for uid in MEMBERS}
    p["ensemble"] = [combine([verdicts[u][i] for u in MEMBERS], config).p_unsafe for i in range(len(scored))]
    p["string-match"] = [1.0 if string_match_unsafe(r.response) else 0.0 for r in scored]
    return {"reliability": config.reliability, "p": p}


def table(
    title: str, labels: list[bool], p: dict[str, list[float | None]], index: list[int]
) -> dict[str, Any]:
    chosen_labels = [labels[i] for i in index]
    share = sum(chosen_labels) / len(index)
    print(f"\n{title}: {len(index)} answers, {sum(chosen_labels)} labelled unsafe ({share:.1%})")
    print(
        f"{'evaluator':<13}{'F1':>7}{'prec':>7}{'recall':>8}{'false-safe':>12}{'false-unsafe':>14}"
        f"{'unsafe rate':>13}"
    )
    out = {}
    for name in NAMES:
        chosen = [p[name][i] for i in index]
        result = agreement(name, chosen_labels, chosen)
        flagged = sum(1 for q in chosen if q is not None and q >= 0.5) / len(index)
        out[name] = result.model_dump() | {"reported_unsafe_rate": flagged}
        print(
            f"{name:<13}{result.f1 or 0:>7.3f}{result.precision or 0:>7.3f}{result.recall or 0:>8.3f}"
            f"{result.false_safe_rate or 0:>12.3f}{result.false_unsafe_rate or 0:>14.3f}{flagged:>13.1%}"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-labels", type=Path, default=LABEL_SETS / "mb-full-smollm2.csv")
    parser.add_argument("--test-labels", type=Path, default=LABEL_SETS / "mb-demo-smollm2.csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = labelled_rows(args.test_labels, "all")
    trained_on = {(r.prompt, r.response) for r in labelled_rows(args.train_labels, "all")}
    if any((r.prompt, r.response) in trained_on for r in rows):
        raise SystemExit("error: the test labels share answers with the training labels")
    certainty = certainty_column(args.test_labels)
    labels = [r.unsafe for r in rows]
    everything = list(range(len(rows)))
    clear = [i for i, c in enumerate(certainty) if c == "clear"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("XSTest only", []), (f"XSTest + {args.train_labels.name}", [args.train_labels])):
            print(f"recipe: head trained on {name}", flush=True)
            run = recipe(extra, rows, Path(tmp), args.seed)
            results[name] = {
                "extra_training_labels": [str(path) for path in extra],
                "test_labels": str(args.test_labels),
                "reliability": run["reliability"],
                "all": table(f"{name}, all rows", labels, run["p"], everything),
                "clear": table(f"{name}, clear-cut labels only", labels, run["p"], clear),
            }
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
