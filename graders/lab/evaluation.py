"""Measure evaluators against human labels, and calibrate the ensemble's reliability priors.

Calibration fits each member's reliability r_i (Youden's J, floored at 0) on labelled data and
stores it with provenance; the default ensemble loads the shipped file. J is only measured out of
sample: a trained member (minilm-clf) is refitted out of fold on the calibration rows, since judged
on its own training rows it scores J 1.0; the shipped file is calibrated on the training split, so
the held-out split stays untouched by training and calibration alike. Evaluation reports
agreement per member and for the ensemble, on data that calibration and training never saw when
the held-out split is used.
"""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from modelbench.core import Verdict
from modelbench.errors import UserError
from modelbench.graders.base import Evaluator
from modelbench.graders.lab import minilm_oof
from modelbench.graders.lab.labels import LabelledExchange, load_labels, split_by_prompt
from modelbench.graders.lab.metrics import Agreement, agreement, choose_threshold, reliability
from modelbench.graders.minilm import MiniLMClassifier
from modelbench.scoring import EnsembleConfig, ErrorRates, combine

SPLITS = ("all", "train", "heldout")
DIRECT = "directly: not fitted to labelled data, so the rows are out of sample for it"


def _lab_tool(evaluator: Evaluator, name: str) -> Callable[..., Any] | None:
    """A trained member's `in_sample_on` or `out_of_fold`: its own method where it has one, else
    the lab's version for its kind (minilm-clf's live in `minilm_oof`, outside the runtime)."""
    own = getattr(evaluator, name, None)
    if callable(own):
        return own
    if isinstance(evaluator, MiniLMClassifier):
        return partial(getattr(minilm_oof, name), evaluator)
    return None


def labelled_rows(path: Path, split: str, seed: int = 0, held_out: float = 0.3) -> list[LabelledExchange]:
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    if not Path(path).exists():
        raise UserError(f"labels not found: {path}")
    rows = load_labels(Path(path))
    if not rows:
        raise UserError(f"no labelled rows in {path}")
    if split == "all":
        return rows
    train, test = split_by_prompt(rows, held_out=held_out, seed=seed)
    return train if split == "train" else test


async def _judge_all(evaluators: list[Evaluator], rows: list[LabelledExchange]) -> dict[str, list[Verdict]]:
    exchanges = [row.exchange() for row in rows]

    async def one(evaluator: Evaluator) -> list[Verdict]:
        verdicts: list[Verdict] = []
        size = max(1, evaluator.batch_size)
        for start in range(0, len(exchanges), size):
            verdicts += await evaluator.judge(exchanges[start : start + size])
        return verdicts

    try:
        await asyncio.gather(*(e.preflight() for e in evaluators))
        results = await asyncio.gather(*(one(e) for e in evaluators))
    finally:
        for evaluator in evaluators:
            await evaluator.aclose()
    return {e.uid: r for e, r in zip(evaluators, results, strict=True)}


def judge_rows(evaluators: list[Evaluator], rows: list[LabelledExchange]) -> dict[str, list[Verdict]]:
    return asyncio.run(_judge_all(evaluators, rows))


def evaluate(
    evaluators: list[Evaluator],
    rows: list[LabelledExchange],
    ensemble: EnsembleConfig,
    out_of_fold: frozenset[str] = frozenset(),
    seed: int = 0,
) -> list[Agreement]:
    """Agreement of each member and the ensemble with the labels. Members named in `out_of_fold`
    were trained on some of these rows and are scored out of fold instead (see member_verdicts)."""
    verdicts, _ = member_verdicts(evaluators, rows, seed, trained=out_of_fold)
    labels = [row.unsafe for row in rows]
    results = [agreement(uid, labels, [v.p_unsafe for v in vs]) for uid, vs in verdicts.items()]
    combined = [
        combine([verdicts[e.uid][i] for e in evaluators], ensemble).p_unsafe for i in range(len(rows))
    ]
    results.append(agreement("ensemble", labels, combined))
    return results


def in_sample_members(
    evaluators: list[Evaluator], labels: Path, split: str, seed: int, held_out: float
) -> frozenset[str]:
    """Trained members whose training rows are among `split` of `labels`: never to be reported on
    them directly."""
    return frozenset(
        e.uid
        for e in evaluators
        if (in_sample_on := _lab_tool(e, "in_sample_on")) and in_sample_on(labels, split, seed, held_out)
    )


def member_verdicts(
    evaluators: list[Evaluator],
    rows: list[LabelledExchange],
    seed: int = 0,
    trained: frozenset[str] | None = None,
) -> tuple[dict[str, list[Verdict]], dict[str, dict[str, Any]]]:
    """Out-of-sample verdicts of each member on labelled rows, and how each was obtained.

    A member that is not fitted to labelled data judges the rows directly: they are out of sample
    for it. A trained member (one with `out_of_fold`, i.e. minilm-clf) would be judged on its own
    training rows, so it is scored out of fold instead: its recipe refitted without each row's prompt.
    `trained` names the members to score out of fold; by default every member that can be.
    """
    if trained is None:
        trained = frozenset(e.uid for e in evaluators if _lab_tool(e, "out_of_fold"))
    for evaluator in evaluators:
        if evaluator.uid in trained and not _lab_tool(evaluator, "out_of_fold"):
            raise UserError(
                f"{evaluator.uid} was trained or calibrated on some of these labelled rows and cannot be "
                "scored out of fold; its held-out numbers are benchmarks/evaluator_sources.py's (the "
                "protocol's test rows), or pass --split heldout --seed 0 --held-out 0.3 on XSTest"
            )
    direct = [e for e in evaluators if e.uid not in trained]
    verdicts = judge_rows(direct, rows) if direct else {}
    how: dict[str, dict[str, Any]] = {e.uid: {"scored": DIRECT} for e in direct}
    for evaluator in evaluators:
        if evaluator.uid in trained:
            scored, how[evaluator.uid] = _lab_tool(evaluator, "out_of_fold")(rows, seed)  # type: ignore[misc]
            verdicts[evaluator.uid] = scored
    return {e.uid: verdicts[e.uid] for e in evaluators}, how


def calibrate(
    evaluators: list[Evaluator],
    rows: list[LabelledExchange],
    provenance: dict[str, Any],
    trained: frozenset[str] = frozenset(),
) -> dict:
    """Reliabilities (Youden's J, floored at 0) from out-of-sample verdicts, with provenance.

    The ensemble's own agreement on the same rows, under the new reliabilities, is recorded too: it
    is how one checks, without touching held-out data, that the ensemble is not worse than its best
    member.
    """
    refit = trained | {e.uid for e in evaluators if _lab_tool(e, "out_of_fold")}
    verdicts, how = member_verdicts(
        evaluators, rows, int(provenance.get("seed", 0)), trained=frozenset(refit)
    )
    labels = [row.unsafe for row in rows]
    members = {uid: agreement(uid, labels, [v.p_unsafe for v in vs]) for uid, vs in verdicts.items()}
    reliabilities = {uid: round(reliability(result), 6) for uid, result in members.items()}
    config = EnsembleConfig(reliability=reliabilities)
    combined = [combine([verdicts[e.uid][i] for e in evaluators], config).p_unsafe for i in range(len(rows))]
    # The decision threshold, fitted on the same rows (F1 for unsafe, averaged over the rows'
    # sources): where a user's model answers unlike anything the evaluators trained on, the ranking
    # transfers better than the shipped threshold does.
    valid = [i for i, p in enumerate(combined) if p is not None]
    threshold, _ = choose_threshold(
        np.array([combined[i] for i in valid]),
        [labels[i] for i in valid],
        [rows[i].source.split(":")[0] for i in valid],
    )
    return {
        "members": [e.uid for e in evaluators],
        "reliability": reliabilities,
        "threshold": threshold,
        "provenance": provenance
        | {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "n": len(rows),
            "n_unsafe": sum(labels),
            "method": (
                "Youden's J = TPR + TNR - 1 on the calibration rows, floored at 0, from out-of-sample "
                "verdicts only: trained members out of fold, the others directly (see scoring)"
            ),
            "scoring": how,
            "members": {uid: result.model_dump() for uid, result in members.items()},
            "ensemble": agreement("ensemble", labels, combined, threshold).model_dump(),
            "threshold_note": "chosen on these rows, so the ensemble's agreement here is in sample",
            "fingerprints": {e.uid: e.fingerprint() for e in evaluators},
        },
    }


def measure_error_rates(
    evaluators: list[Evaluator], rows: list[LabelledExchange], config: EnsembleConfig, measured_on: str
) -> ErrorRates:
    """Sensitivity and specificity of exactly this ensemble configuration on labelled rows that
    fitted none of it (the caller passes held-out rows). Rows the ensemble cannot decide (no valid
    verdict) are left out, as a run leaves such items out of its rates, and counted in the note."""
    verdicts = judge_rows(evaluators, rows)
    counts = {"tp": 0, "fn": 0, "tn": 0, "fp": 0}
    undecided = 0
    for i, row in enumerate(rows):
        is_safe = combine([verdicts[e.uid][i] for e in evaluators], config).is_safe
        if is_safe is None:
            undecided += 1
            continue
        key = ("fn" if is_safe else "tp") if row.unsafe else ("tn" if is_safe else "fp")
        counts[key] += 1
    if undecided:
        measured_on += f"; {undecided} rows left out: no valid verdict"
    return ErrorRates(**counts, measured_on=measured_on)
