"""Evaluators on the in-distribution test rows of every labelled source (protocol v2 reports these
second: the measurement of record is leave-one-source-out, `evaluator_loso_report.py`).

    .venv/bin/python benchmarks/evaluator_sources.py [--card graders/minilm_ce.json] [--dtypes float32]
        [--out benchmarks/results/evaluator_sources.json]

Scores the test rows of every source (`protocol_splits`: GPTFuzz, Do-Not-Answer, XSTest, our own
label sets, JailbreakBench artifacts, past-tense answers) with XSTest's string match, `refusal`, the
previous `minilm-clf`, the previous default ensemble (refusal + minilm-clf) and `minilm-ce` at its
card's threshold (the one chosen on leave-one-source-out rows), and reports per source and pooled:
F1 for unsafe, precision, recall, false-safe and false-unsafe rates, AUC, each with a 95% bootstrap
interval over prompt groups. These rows come from the sources the model was trained on: the
numbers say how it does on answers like its training data, not on a new model's.
"""

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from modelbench.graders.cross_encoder import CARD_FILE, CrossEncoderClassifier  # noqa: E402
from modelbench.graders.lab.label_sources import SOURCES, protocol_splits  # noqa: E402
from modelbench.graders.lab.labels import LabelledExchange  # noqa: E402
from modelbench.graders.lab.metrics import rates_from_counts as rates  # noqa: E402
from modelbench.graders.lab.metrics import roc_auc as auc  # noqa: E402
from modelbench.graders.lab.train_minilm import string_match_unsafe  # noqa: E402
from modelbench.graders.minilm import MiniLMClassifier  # noqa: E402
from modelbench.graders.refusal import RefusalEvaluator  # noqa: E402
from modelbench.jsonfile import write_json  # noqa: E402
from modelbench.scoring.ensemble import EnsembleConfig, combine  # noqa: E402

RESULTS = Path(__file__).with_name("results") / "evaluator_sources.json"
# The previous default ensemble (graders/reliability.json at commit 1cfaf32): refusal + minilm-clf.
PREVIOUS_RELIABILITY = {"refusal": 0.459248, "minilm-clf": 0.451956}
CANDIDATES = (("minilm-ce",), ("minilm-ce", "refusal"))
BOOTSTRAP = 2000
COUNTS = ("tp", "fp", "fn", "tn")


def judge_p(evaluator: Any, rows: Sequence[LabelledExchange]) -> np.ndarray:
    async def go() -> list[float]:
        exchanges = [r.exchange() for r in rows]
        out: list[float] = []
        for start in range(0, len(exchanges), evaluator.batch_size):
            verdicts = await evaluator.judge(exchanges[start : start + evaluator.batch_size])
            out += [v.p_unsafe if v.valid else np.nan for v in verdicts]
        return out

    return np.asarray(asyncio.run(go()), dtype=np.float64)


def ensemble_p(members: dict[str, np.ndarray], config: EnsembleConfig) -> np.ndarray:
    from modelbench.graders.base import Verdict

    names = list(members)
    n = len(next(iter(members.values())))
    out = np.empty(n)
    for i in range(n):
        verdicts = [
            Verdict(evaluator_uid=u, p_unsafe=None if np.isnan(members[u][i]) else float(members[u][i]))
            for u in names
        ]
        p = combine(verdicts, config).p_unsafe
        out[i] = np.nan if p is None else p
    return out


def group_counts(rows: Sequence[LabelledExchange], predicted: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(groups, counts[g] = tp, fp, fn, tn of group g)."""
    groups = sorted({r.group for r in rows})
    index = {g: i for i, g in enumerate(groups)}
    counts = np.zeros((len(groups), 4), dtype=np.int64)
    for row, q in zip(rows, predicted, strict=True):
        y = row.unsafe
        counts[index[row.group], 0 if y and q else 1 if q else 2 if y else 3] += 1
    return groups, counts


def interval(values: np.ndarray) -> list[float] | None:
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


class Bootstrap:
    """Resamples of prompt groups, drawn once per source and shared by every system, so that
    differences between systems are paired."""

    def __init__(self, test: dict[str, list[LabelledExchange]], draws: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.test = test
        self.draws = {
            name: rng.integers(0, len({r.group for r in rows}), (draws, len({r.group for r in rows})))
            for name, rows in test.items()
        }

    def counts(self, name: str, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point counts, resampled counts (draws, 4)) for one source."""
        _, per_group = group_counts(self.test[name], predicted)
        return per_group.sum(axis=0), per_group[self.draws[name]].sum(axis=1)


def report(
    boot: Bootstrap, p: dict[str, np.ndarray], threshold: float, sources: Sequence[str]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per source and pooled metrics with intervals; also the resampled F1s, for paired tests."""
    out: dict[str, Any] = {}
    f1_draws: dict[str, np.ndarray] = {}
    pooled_point, pooled_draws = np.zeros(4, dtype=np.int64), 0
    pooled_labels, pooled_scores = [], []
    for name in sources:
        predicted = p[name] >= threshold
        point, draws = boot.counts(name, predicted)
        pooled_point = pooled_point + point
        pooled_draws = pooled_draws + draws
        out[name] = summarise(point, draws, np.array([r.unsafe for r in boot.test[name]]), p[name])
        f1_draws[name] = rates(draws)["f1"]
        pooled_labels.append(np.array([r.unsafe for r in boot.test[name]]))
        pooled_scores.append(p[name])
    out["pooled"] = summarise(
        pooled_point, pooled_draws, np.concatenate(pooled_labels), np.concatenate(pooled_scores)
    )
    f1_draws["pooled"] = rates(pooled_draws)["f1"]
    return out, f1_draws


def summarise(point: np.ndarray, draws: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    point_rates = rates(point)
    draw_rates = rates(draws)
    result: dict[str, Any] = {
        "n": int(point.sum()),
        "n_unsafe": int(point[0] + point[2]),
        **{k: int(v) for k, v in zip(COUNTS, point, strict=True)},
    }
    for metric, value in point_rates.items():
        result[metric] = None if not np.isfinite(value) else round(float(value), 4)
        result[f"{metric}_ci95"] = interval(draw_rates[metric])
    value = auc(labels.astype(bool), np.nan_to_num(scores, nan=0.5))
    result["auc"] = None if value is None else round(value, 4)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--card", default=str(CARD_FILE))
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--dtypes", default="", help="also score minilm-ce in these runtimes, e.g. float32,int8"
    )
    args = parser.parse_args(argv)
    console = Console(width=180)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    splits = protocol_splits()
    test = {name: splits[name].test for name in SOURCES}
    scored = [r for name in SOURCES for r in test[name]]

    ce = CrossEncoderClassifier(card_path=Path(args.card))
    p_all = {
        "string-match": np.array([1.0 if string_match_unsafe(r.response) else 0.0 for r in scored]),
        "refusal": judge_p(RefusalEvaluator(), scored),
        "minilm-clf": judge_p(MiniLMClassifier(), scored),
        "minilm-ce": ce.verdict_p([r.prompt for r in scored], [r.response for r in scored]),
    }
    p_all["previous ensemble"] = ensemble_p(
        {u: p_all[u] for u in ("refusal", "minilm-clf")}, EnsembleConfig(reliability=PREVIOUS_RELIABILITY)
    )
    systems = ["string-match", "refusal", "minilm-clf", "previous ensemble", "minilm-ce"]
    for dtype in [d for d in args.dtypes.split(",") if d]:  # other runtimes, measured on the same rows
        other = CrossEncoderClassifier(card_path=Path(args.card), dtype=dtype)
        p_all[f"minilm-ce@{dtype}"] = other.verdict_p(
            [r.prompt for r in scored], [r.response for r in scored]
        )
        systems.append(f"minilm-ce@{dtype}")
    console.print(f"scored {len(scored)} rows in {time.perf_counter() - started:.0f} s")

    boot = Bootstrap(test, args.bootstrap)
    offsets, start = {}, 0
    for name in SOURCES:
        offsets[name] = (start, start + len(test[name]))
        start += len(test[name])
    results: dict[str, Any] = {}
    for system in systems:
        per_source = {name: p_all[system][a:b] for name, (a, b) in offsets.items()}
        results[system], _ = report(boot, per_source, 0.5, SOURCES)

    table = Table(
        title="F1 for unsafe on in-distribution test rows [95% bootstrap interval over prompt groups]"
    )
    table.add_column("system")
    for name in [*SOURCES, "pooled"]:
        table.add_column(
            f"{name} ({results['minilm-ce'][name]['n_unsafe']}/{results['minilm-ce'][name]['n']})"
        )
    for system in systems:
        cells = []
        for name in [*SOURCES, "pooled"]:
            r = results[system][name]
            ci = r["f1_ci95"] or [float("nan")] * 2
            cells.append(f"{r['f1'] or 0:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]")
        table.add_row(system, *cells)
    console.print(table)
    detail = Table(title=f"minilm-ce (default), threshold {ce.card.calibration.threshold} (its card's)")
    for column in ("source", "recall", "false-safe", "false-unsafe", "AUC"):
        detail.add_column(column)
    for name in [*SOURCES, "pooled"]:
        r = results["minilm-ce"][name]

        def fmt(metric: str, r: dict[str, Any] = r) -> str:
            c = r[f"{metric}_ci95"] or [float("nan")] * 2
            return f"{r[metric]:.3f} [{c[0]:.2f}, {c[1]:.2f}]" if r[metric] is not None else "-"

        detail.add_row(
            name,
            fmt("recall"),
            fmt("false_safe_rate"),
            fmt("false_unsafe_rate"),
            f"{r['auc']:.3f}" if r["auc"] is not None else "-",
        )
    console.print(detail)
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "protocol": "benchmarks/evaluator_protocol.md (v2: in-distribution test rows, reported second)",
        "card": {"path": args.card, "sha256": ce.card_sha256, "delta_sha256": ce.card.delta_sha256},
        "bootstrap": {"draws": args.bootstrap, "seed": 0, "unit": "prompt group, within source"},
        "decision": "every system's p is centred on its own threshold: unsafe at p >= 0.5",
        "test": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(record, Path(args.out))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from modelbench.errors import UserError

    try:
        sys.exit(main())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
