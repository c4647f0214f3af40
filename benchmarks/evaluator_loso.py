"""Leave-one-source-out (LOSO) training and per-row scores: the measurement of record for evaluators
(`benchmarks/evaluator_protocol.md`, protocol v2).

    .venv/bin/python benchmarks/evaluator_loso.py train --recipe R1 [--folds behaviours,gptfuzz,...]

For each fold (a source, or sources that share their groups: JailbreakBench artifacts and the
past-tense answers share their 100 behaviours), trains `minilm-ce` with the recipe on every other
source's training rows, fits its Platt scaling on their calibration rows, then scores every row of
the left-out source(s) (train, calibration and test rows; judge-ambiguous rows excepted). Each row
is therefore scored by a model that never saw its source: that is how a new model's answers meet
the evaluator. The fold's card goes to `benchmarks/loso/RECIPE/FOLD.json` (its delta beside it is
not committed); the rows go to `benchmarks/results/loso_RECIPE.csv.gz`, which the report
(`evaluator_loso_report.py`) and the correction's coverage test read. A fold already scored is
skipped, so the command resumes.

Recipes (at most four are compared on the same folds; see the protocol):
- R1: new judge-labelled sources, soft targets where judges disagree, source-balanced loss weights.
- R2: R1 with hard negatives: safe answers that engage (no opening refusal) weighted 3x.
- R3: R1 with a training-only source: SmolLM2's real answers to the benign twin prompts (safe).
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from modelbench.graders.cross_encoder import CrossEncoderClassifier, calibrated  # noqa: E402
from modelbench.graders.lab.label_sources import LOSO_FOLDS, all_rows, protocol_splits  # noqa: E402
from modelbench.graders.lab.labels import LabelledExchange  # noqa: E402
from modelbench.graders.lab.train_cross_encoder import main as train_main  # noqa: E402
from modelbench.graders.refusal import RefusalEvaluator  # noqa: E402
from modelbench.hashing import stable_hash  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FOLD_DIR = HERE / "loso"
RECIPES: dict[str, list[str]] = {
    "R1": ["--balance", "sources"],
    "R2": ["--balance", "sources", "--hard-negatives", "3"],
    "R3": ["--balance", "sources", "--extra-sources", "twins"],
}
COLUMNS = ("fold", "source", "key", "group", "model", "prompt_type", "unsafe", "logit", "p", "refusal_p")


def scores_path(recipe: str) -> Path:
    return RESULTS / f"loso_{recipe}.csv.gz"


def row_key(row: LabelledExchange) -> str:
    return stable_hash(
        "loso-row", row.source, row.group, row.model or "", row.prompt, row.response, length=16
    )


def refusal_p(rows: list[LabelledExchange]) -> np.ndarray:
    verdicts = RefusalEvaluator().judge_sync([r.exchange() for r in rows])
    return np.array([np.nan if v.p_unsafe is None else v.p_unsafe for v in verdicts])


def score_fold(card: Path, fold: str, rows: list[LabelledExchange], dtype: str = "float32") -> pd.DataFrame:
    """Every row scored by the fold's model; float32 torch is the reference runtime."""
    model = CrossEncoderClassifier(card_path=card, dtype=dtype)
    started = time.perf_counter()
    logits = model.logits([r.prompt for r in rows], [r.response for r in rows])
    print(f"  scored {len(rows)} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return pd.DataFrame(
        {
            "fold": fold,
            "source": [r.source.split(":")[0] for r in rows],
            "key": [row_key(r) for r in rows],
            "group": [r.group for r in rows],
            "model": [r.model or "" for r in rows],
            "prompt_type": [r.prompt_type or "" for r in rows],
            "unsafe": [int(r.unsafe) for r in rows],
            "logit": np.round(logits, 5),
            "p": np.round(calibrated(logits, model.card.calibration), 6),
            "refusal_p": np.round(refusal_p(rows), 6),
        }
    )


def train(args: argparse.Namespace) -> int:
    folds = args.folds.split(",") if args.folds else list(LOSO_FOLDS)
    out_dir = FOLD_DIR / args.recipe
    out_dir.mkdir(parents=True, exist_ok=True)
    path = scores_path(args.recipe)
    done = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=list(COLUMNS))
    splits = protocol_splits()
    for fold in folds:
        if fold in set(done["fold"]):
            print(f"{fold}: already scored", file=sys.stderr)
            continue
        card = out_dir / f"{fold}.json"
        if not card.exists() or not card.with_suffix(".safetensors").exists():
            started = time.perf_counter()
            argv = [
                "--leave-out",
                fold,
                "--out",
                str(card),
                "--threads",
                str(args.threads),
                *RECIPES[args.recipe],
            ]
            print(f"{fold}: training {' '.join(argv)}", file=sys.stderr, flush=True)
            if train_main(argv) != 0:
                return 2
            print(f"{fold}: trained in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        rows = [r for name in LOSO_FOLDS[fold] for r in all_rows(splits[name])]
        frame = score_fold(card, fold, rows)
        done = pd.concat([done, frame], ignore_index=True) if len(done) else frame
        done.to_csv(path, index=False)  # after every fold, so that a stopped run resumes
    return 0


def rescore(args: argparse.Namespace) -> int:
    """The same folds' models, the same rows, in another runtime: `loso_RECIPE@DTYPE.csv.gz`, so
    that the report can compare LOSO F1 between runtimes (the fold deltas must be on disk)."""
    splits = protocol_splits()
    frames = []
    for fold in LOSO_FOLDS:
        card = FOLD_DIR / args.recipe / f"{fold}.json"
        rows = [r for name in LOSO_FOLDS[fold] for r in all_rows(splits[name])]
        print(f"{fold}: {args.dtype}", file=sys.stderr, flush=True)
        frames.append(score_fold(card, fold, rows, args.dtype))
    pd.concat(frames, ignore_index=True).to_csv(
        RESULTS / f"loso_{args.recipe}@{args.dtype}.csv.gz", index=False
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train each fold's model and score the rows it left out")
    t.add_argument("--recipe", choices=tuple(RECIPES), default="R1")
    t.add_argument("--folds", default="", help="comma-separated folds (default: all)")
    t.add_argument("--threads", type=int, default=2)
    r = sub.add_parser("rescore", help="score every fold's rows again in another runtime")
    r.add_argument("--recipe", choices=tuple(RECIPES), default="R1")
    r.add_argument("--dtype", default="onnx-int8")
    args = parser.parse_args(argv)
    return train(args) if args.command == "train" else rescore(args)


if __name__ == "__main__":
    sys.exit(main())
