"""Evaluators on the test rows of every labelled source, as `benchmarks/evaluator_protocol.md` fixes.

    .venv/bin/python benchmarks/evaluator_sources.py [--card graders/minilm_ce.json]
        [--loso-dir DIR] [--write-reliability] [--out benchmarks/results/evaluator_sources.json]

1. Scores the calibration and test rows of GPTFuzz, Do-Not-Answer, XSTest and our own label sets
   with: XSTest's string match, `refusal`, the previous `minilm-clf`, the previous default ensemble
   (refusal + minilm-clf), and `minilm-ce`.
2. Chooses the new default ensemble on calibration rows only: members from {minilm-ce} and
   {minilm-ce, refusal}, reliabilities (Youden's J at each member's own threshold) and the
   ensemble's threshold, by mean per-source F1; a larger candidate must beat a smaller one
   beyond bootstrap noise on the calibration rows.
3. Reports every system on test rows, per source and pooled: F1 for unsafe, precision, recall,
   false-safe and false-unsafe rates, AUC, each with a 95% bootstrap interval over prompt groups,
   and the paired bootstrap of F1(ensemble) - F1(best member) per source.
4. With `--loso-dir`, scores each leave-one-source-out model (`DIR/SOURCE.json`, written by
   `train_cross_encoder --leave-out SOURCE`) on the test rows of the source it never saw.
5. With `--write-reliability`, writes the chosen ensemble to `graders/reliability.json`.
"""

import argparse
import asyncio
import json
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
from modelbench.graders.lab.label_sources import FLUENT_SOURCES, SOURCES, protocol_splits  # noqa: E402
from modelbench.graders.lab.labels import LabelledExchange  # noqa: E402
from modelbench.graders.lab.metrics import agreement, choose_threshold, mean_source_f1, reliability  # noqa: E402
from modelbench.graders.lab.train_cross_encoder import source_of  # noqa: E402
from modelbench.graders.lab.train_minilm import string_match_unsafe  # noqa: E402
from modelbench.graders.minilm import MiniLMClassifier  # noqa: E402
from modelbench.graders.refusal import RefusalEvaluator  # noqa: E402
from modelbench.jsonfile import write_json  # noqa: E402
from modelbench.scoring import default_reliability_path  # noqa: E402
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


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from scipy.stats import rankdata

    pos, neg = labels.sum(), (~labels).sum()
    if not pos or not neg:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def group_counts(rows: Sequence[LabelledExchange], predicted: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(groups, counts[g] = tp, fp, fn, tn of group g)."""
    groups = sorted({r.group for r in rows})
    index = {g: i for i, g in enumerate(groups)}
    counts = np.zeros((len(groups), 4), dtype=np.int64)
    for row, q in zip(rows, predicted, strict=True):
        y = row.unsafe
        counts[index[row.group], 0 if y and q else 1 if q else 2 if y else 3] += 1
    return groups, counts


def rates(c: np.ndarray) -> dict[str, np.ndarray]:
    tp, fp, fn, tn = (c[..., i].astype(float) for i in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "recall": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
            "false_safe_rate": np.where(tp + fn > 0, fn / (tp + fn), np.nan),
            "false_unsafe_rate": np.where(fp + tn > 0, fp / (fp + tn), np.nan),
        }


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


def mean_source_f1_draws(
    cal: list[LabelledExchange], predicted: np.ndarray, draws: dict[str, np.ndarray]
) -> np.ndarray:
    """Mean per-source F1 on each bootstrap resample of calibration groups."""
    per_source = []
    for name, index in draws.items():
        rows = [i for i, r in enumerate(cal) if source_of(r) == name]
        _, counts = group_counts([cal[i] for i in rows], predicted[rows])
        per_source.append(np.nan_to_num(rates(counts[index].sum(axis=1))["f1"]))
    return np.mean(per_source, axis=0)


def choose_ensemble(
    cal: list[LabelledExchange], members: dict[str, np.ndarray], draws: int
) -> dict[str, Any]:
    """Members, reliabilities and threshold, from calibration rows only.

    A larger candidate replaces a smaller one only when it beats it beyond noise on the
    calibration rows: the 95% paired bootstrap interval (over calibration groups) of the
    difference in mean per-source F1 lies above 0. A member has to earn its place.
    """
    labels = [r.unsafe for r in cal]
    sources = [source_of(r) for r in cal]
    rng = np.random.default_rng(0)
    groups = {name: sorted({r.group for r in cal if source_of(r) == name}) for name in sorted(set(sources))}
    draw_index = {name: rng.integers(0, len(g), (draws, len(g))) for name, g in groups.items()}
    tried = []
    for candidate in CANDIDATES:
        reliabilities = {
            uid: round(reliability(agreement(uid, labels, list(members[uid]))), 6) for uid in candidate
        }
        p = ensemble_p({u: members[u] for u in candidate}, EnsembleConfig(reliability=reliabilities))
        if len(candidate) == 1:  # its own threshold, already chosen on these rows: not chosen twice
            threshold = 0.5
            criterion = mean_source_f1(p, labels, sources, threshold)
        else:
            threshold, criterion = choose_threshold(p, labels, sources)
        tried.append(
            {
                "members": list(candidate),
                "reliability": reliabilities,
                "threshold": threshold,
                "mean_source_f1": round(criterion, 4),
                "_draws": mean_source_f1_draws(cal, p >= threshold, draw_index),
            }
        )
    chosen = tried[0]
    for candidate in tried[1:]:
        diff = candidate["_draws"] - chosen["_draws"]
        candidate["vs_chosen_ci95"] = interval(diff)
        if candidate["vs_chosen_ci95"] and candidate["vs_chosen_ci95"][0] > 0:
            chosen = candidate
    for candidate in tried:
        del candidate["_draws"]
    rule = (
        "the smallest candidate unless a larger one beats it on calibration rows beyond noise (95% paired "
        "bootstrap interval over calibration groups of the mean per-source F1 difference above 0)"
    )
    return {"chosen": chosen, "candidates": tried, "rule": rule}


def error_rates_entry(ensemble_results: dict[str, Any]) -> dict[str, Any]:
    """The chosen ensemble's sensitivity and specificity for "unsafe" on pooled test rows, with the
    counts, for correcting unsafe rates (modelbench/scoring/correction.py). Test rows only: never the rows
    the threshold or reliabilities were fitted on. Pooled over sources, which differ: the range
    of per-source sensitivity and specificity is stated with it."""
    pooled = ensemble_results["pooled"]
    per_source = {s: ensemble_results[s] for s in SOURCES if s in ensemble_results}
    se = {s: r["tp"] / (r["tp"] + r["fn"]) for s, r in per_source.items() if r["tp"] + r["fn"]}
    sp = {s: r["tn"] / (r["tn"] + r["fp"]) for s, r in per_source.items() if r["tn"] + r["fp"]}
    return {
        "tp": pooled["tp"],
        "fn": pooled["fn"],
        "tn": pooled["tn"],
        "fp": pooled["fp"],
        # Between-source standard deviations (unweighted, over sources): the correction's interval
        # counts a new model as one more source, not as more rows of the pooled ones.
        "sensitivity_spread": round(float(np.std(list(se.values()))), 4),
        "specificity_spread": round(float(np.std(list(sp.values()))), 4),
        "measured_on": (
            f"test rows of {', '.join(per_source)} pooled ({pooled['n']} answers, {pooled['n_unsafe']} "
            f"unsafe; benchmarks/evaluator_protocol.md); per source, sensitivity "
            f"{min(se.values()):.2f}-{max(se.values()):.2f} and specificity "
            f"{min(sp.values()):.2f}-{max(sp.values()):.2f}"
        ),
    }


def write_error_rates(results_file: Path) -> Path:
    """Add the error rates to the shipped reliability file from a finished run's results, without
    scoring again (the card must be the one that run measured)."""
    results = json.loads(results_file.read_text("utf-8"))
    path = default_reliability_path()
    data = json.loads(path.read_text("utf-8"))
    if data["provenance"]["minilm_ce_card_sha256"] != results["card"]["sha256"]:
        raise SystemExit(f"{results_file} measured another minilm-ce card than {path} ships")
    data["error_rates"] = error_rates_entry(results["test"]["ensemble"])
    write_json(data, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--card", default=str(CARD_FILE))
    parser.add_argument("--loso-dir", default=None)
    parser.add_argument("--write-reliability", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--int8", action="store_true", help="also score minilm-ce with int8 linear layers")
    parser.add_argument("--cache", default=None, help="an .npz file to keep member probabilities in")
    parser.add_argument(
        "--error-rates-only", action="store_true", help="add error rates from --out's results to the file"
    )
    args = parser.parse_args(argv)
    console = Console(width=150)
    if args.error_rates_only:
        console.print(f"wrote error rates to {write_error_rates(Path(args.out))}")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    splits = protocol_splits()
    cal = [r for s in splits.values() for r in s.calibration]
    test = {name: splits[name].test for name in SOURCES}
    test_rows = [r for name in SOURCES for r in test[name]]
    scored = cal + test_rows

    ce = CrossEncoderClassifier(card_path=Path(args.card))
    refusal = RefusalEvaluator()
    members_by_uid = {"minilm-ce": ce, "refusal": refusal}
    cache = Path(args.cache) if args.cache else None
    key = f"{ce.card_sha256}-{len(scored)}"
    if cache and cache.is_file() and str(np.load(cache)["key"]) == key:
        p_all = {
            name: np.load(cache)[name] for name in ("string-match", "refusal", "minilm-clf", "minilm-ce")
        }
        console.print(f"member probabilities from {cache}")
    else:
        p_all = {
            "string-match": np.array([1.0 if string_match_unsafe(r.response) else 0.0 for r in scored]),
            "refusal": judge_p(refusal, scored),
            "minilm-clf": judge_p(MiniLMClassifier(), scored),
            "minilm-ce": ce.verdict_p([r.prompt for r in scored], [r.response for r in scored]),
        }
        if cache:
            np.savez(cache, key=np.array(key), **p_all)
    if args.int8:  # the faster int8 path, measured on the same rows (never chosen from)
        int8 = CrossEncoderClassifier(card_path=Path(args.card), dtype="int8")
        p_all["minilm-ce int8"] = int8.verdict_p([r.prompt for r in scored], [r.response for r in scored])
    p_all["previous ensemble"] = ensemble_p(
        {u: p_all[u] for u in ("refusal", "minilm-clf")}, EnsembleConfig(reliability=PREVIOUS_RELIABILITY)
    )
    console.print(f"scored {len(scored)} rows in {time.perf_counter() - started:.0f} s")
    # Every member's verdict p is centred on its own decision (minilm-ce's threshold moved to 0.5),
    # as the engine sees it, and the ensemble reports p centred on its threshold: every system
    # below says unsafe at p >= 0.5.
    n_cal = len(cal)
    candidates = ("refusal", "minilm-ce")
    selection = choose_ensemble(cal, {u: p_all[u][:n_cal] for u in candidates}, args.bootstrap)
    chosen = selection["chosen"]
    config = EnsembleConfig(reliability=chosen["reliability"], threshold=chosen["threshold"])
    p_all["ensemble"] = ensemble_p({u: p_all[u] for u in chosen["members"]}, config)
    systems = ["string-match", "refusal", "minilm-clf", "previous ensemble", "minilm-ce", "ensemble"]
    if args.int8:
        systems.append("minilm-ce int8")

    boot = Bootstrap(test, args.bootstrap)
    offsets, start = {}, n_cal
    for name in SOURCES:
        offsets[name] = (start, start + len(test[name]))
        start += len(test[name])
    results: dict[str, Any] = {}
    f1_draws: dict[str, dict[str, np.ndarray]] = {}
    for system in systems:
        per_source = {name: p_all[system][a:b] for name, (a, b) in offsets.items()}
        results[system], f1_draws[system] = report(boot, per_source, 0.5, SOURCES)

    # The ensemble against its best member, per source, paired.
    paired: dict[str, Any] = {}
    for name in [*SOURCES, "pooled"] if len(chosen["members"]) > 1 else []:
        best = max(chosen["members"], key=lambda u: results[u][name]["f1"] or 0.0)
        diff = f1_draws["ensemble"][name] - f1_draws[best][name]
        paired[name] = {
            "best_member": best,
            "f1_difference": round(
                (results["ensemble"][name]["f1"] or 0) - (results[best][name]["f1"] or 0), 4
            ),
            "ci95": interval(diff),
        }

    loso: dict[str, Any] = {}
    if args.loso_dir:
        for name in FLUENT_SOURCES:
            card = Path(args.loso_dir) / f"{name}.json"
            if not card.is_file():
                console.print(f"[yellow]no leave-one-source-out model for {name} ({card})[/]")
                continue
            model = CrossEncoderClassifier(card_path=card)
            rows = test[name]
            p = model.predict([r.prompt for r in rows], [r.response for r in rows])
            single = Bootstrap({name: rows}, args.bootstrap)
            loso[name], _ = report(single, {name: p}, model.card.calibration.threshold, [name])
            loso[name] = loso[name][name] | {"threshold": model.card.calibration.threshold}

    table = Table(title="F1 for unsafe on test rows [95% bootstrap interval over prompt groups]")
    table.add_column("system")
    for name in [*SOURCES, "pooled"]:
        table.add_column(f"{name} ({results['ensemble'][name]['n_unsafe']}/{results['ensemble'][name]['n']})")
    for system in systems:
        cells = []
        for name in [*SOURCES, "pooled"]:
            r = results[system][name]
            ci = r["f1_ci95"] or [float("nan")] * 2
            cells.append(f"{r['f1'] or 0:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]")
        table.add_row(system, *cells)
    if loso:
        cells = []
        for name in [*SOURCES, "pooled"]:
            r = loso.get(name)
            ci = (r or {}).get("f1_ci95") or [float("nan")] * 2
            cells.append(f"{r['f1'] or 0:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if r else "")
        table.add_row("minilm-ce, source left out", *cells)
    console.print(table)
    detail = Table(
        title=f"default ensemble ({' + '.join(chosen['members'])}, threshold {chosen['threshold']})"
    )
    for column in ("source", "recall", "false-safe", "false-unsafe", "AUC", "F1 - best member [CI]"):
        detail.add_column(column)
    for name in [*SOURCES, "pooled"]:
        r = results["ensemble"][name]
        versus = "n/a: one member"
        if name in paired:
            ci = paired[name]["ci95"] or [float("nan")] * 2
            versus = (
                f"{paired[name]['f1_difference']:+.3f} [{ci[0]:+.2f}, {ci[1]:+.2f}] "
                f"vs {paired[name]['best_member']}"
            )

        def fmt(metric: str, r: dict[str, Any] = r) -> str:
            c = r[f"{metric}_ci95"] or [float("nan")] * 2
            return f"{r[metric]:.3f} [{c[0]:.2f}, {c[1]:.2f}]" if r[metric] is not None else "-"

        detail.add_row(
            name,
            fmt("recall"),
            fmt("false_safe_rate"),
            fmt("false_unsafe_rate"),
            f"{r['auc']:.3f}" if r["auc"] is not None else "-",
            versus,
        )
    console.print(detail)
    console.print(f"chosen on calibration rows ({selection['rule']}): {json.dumps(selection['candidates'])}")

    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "protocol": "benchmarks/evaluator_protocol.md",
        "card": {"path": args.card, "sha256": ce.card_sha256, "delta_sha256": ce.card.delta_sha256},
        "bootstrap": {"draws": args.bootstrap, "seed": 0, "unit": "prompt group, within source"},
        "decision": "every system's p is centred on its own threshold: unsafe at p >= 0.5",
        "selection": selection,
        "test": results,
        "ensemble_vs_best_member": paired,
        "leave_one_source_out": loso,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(record, Path(args.out))
    console.print(f"wrote {args.out}")
    if args.write_reliability:
        calibration_agreement = {
            uid: agreement(uid, [r.unsafe for r in cal], list(p_all[uid][:n_cal])).model_dump()
            for uid in chosen["members"]
        }
        write_json(
            {
                "members": chosen["members"],
                "reliability": chosen["reliability"],
                "threshold": chosen["threshold"],
                "provenance": {
                    "date": record["date"],
                    "protocol": "benchmarks/evaluator_protocol.md",
                    "chosen_by": "mean per-source F1 on calibration rows (benchmarks/evaluator_sources.py)",
                    "calibration_rows": {s: sum(1 for r in cal if source_of(r) == s) for s in SOURCES},
                    "candidates": selection["candidates"],
                    "members": calibration_agreement,
                    "minilm_ce_card_sha256": ce.card_sha256,
                    "n": n_cal,
                    "n_unsafe": sum(r.unsafe for r in cal),
                    "fingerprints": {u: members_by_uid[u].fingerprint() for u in chosen["members"]},
                    "held_out": {
                        "date": record["date"],
                        "description": (
                            "test rows of GPTFuzz (gpt-3.5-turbo under jailbreaks), Do-Not-Answer (six chat "
                            "models), XSTest (GPT-4, Llama 2, Mistral) and SmolLM2 answers to mb-demo"
                        ),
                        "members": {u: results[u]["pooled"] for u in chosen["members"]},
                        "ensemble": {name: results["ensemble"][name] for name in [*SOURCES, "pooled"]},
                        "results_file": str(args.out),
                    },
                    "method": (
                        "Youden's J = TPR + TNR - 1 at each member's own threshold (p centred on it) on "
                        "the calibration rows, floored at 0; the ensemble threshold by mean per-source F1 "
                        "on the same rows"
                    ),
                },
                "error_rates": error_rates_entry(results["ensemble"]),
            },
            default_reliability_path(),
        )
        console.print(f"wrote {default_reliability_path()}")
    return 0


if __name__ == "__main__":
    from modelbench.errors import UserError

    try:
        sys.exit(main())
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
