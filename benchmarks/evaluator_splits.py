"""The default ensemble's recipe measured on several held-out splits, not one.

    .venv/bin/python benchmarks/evaluator_splits.py [--seeds 1,2,3,4,5] [--data DIR] [--json FILE]

With 20 harmful answers in a held-out split, one split's F1 moves by several points when two
answers change side. For each seed this trains the MiniLM head on that seed's training split,
calibrates the reliabilities on the same training rows out of fold (exactly as the shipped files
are made), and scores refusal, minilm-clf, the ensemble and XSTest's string-match baseline on that
seed's held-out split, which none of them saw. The table gives each split and the mean.
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from modelbench.graders.ensemble import EnsembleConfig
from modelbench.graders.evaluation import calibrate, evaluate, labelled_rows
from modelbench.graders.metrics import agreement
from modelbench.graders.minilm import MiniLMClassifier
from modelbench.graders.refusal import RefusalEvaluator
from modelbench.graders.train_minilm import DEFAULT_DATA, string_match_unsafe, train

COLUMNS = ("string-match", "refusal", "minilm-clf", "ensemble")


def one_split(data: Path, seed: int, held_out: float, folder: Path) -> dict[str, Any]:
    """F1, recall and kappa for unsafe on one seed's held-out rows, everything fitted on its train rows."""
    head = folder / f"head-{seed}.json"
    train(data, head, seed=seed, held_out=held_out, log=lambda *_: None)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--held-out", type=float, default=0.3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    splits = []
    print(
        f"{'seed':>5} {'n':>4} {'unsafe':>6} " + " ".join(f"{c:>13}" for c in COLUMNS) + "   (F1 for unsafe)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            split = one_split(args.data, seed, args.held_out, Path(tmp))
            splits.append(split)
            f1 = " ".join(f"{split['f1'][c]:>13.3f}" for c in COLUMNS)
            print(f"{seed:>5} {split['n']:>4} {split['n_unsafe']:>6} {f1}", flush=True)
    means = {c: statistics.fmean(s["f1"][c] for s in splits) for c in COLUMNS}
    print(f"{'mean':>5} {'':>4} {'':>6} " + " ".join(f"{means[c]:>13.3f}" for c in COLUMNS))
    wins = sum(s["f1"]["ensemble"] >= max(s["f1"]["refusal"], s["f1"]["minilm-clf"]) for s in splits)
    print(f"ensemble at least as good as its best member on {wins} of {len(splits)} splits")
    if args.json:
        args.json.write_text(json.dumps({"splits": splits, "mean_f1": means}, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
