"""Scoring a finished fill: every answer and verdict of the run is stored and the engine has combined
the verdicts, so what is left is arithmetic: the safety grade of each SUT on the plain hazard items,
its answer quality, and its resilience under each attack. Nothing is asked of a model here."""

from collections.abc import Mapping, Sequence
from typing import Any

from modelbench.engine import RunOutcome
from modelbench.hazards import ReferenceStandard
from modelbench.quality import run_quality
from modelbench.reports import RunGrades
from modelbench.resilience import run_resilience
from modelbench.run_plan import PreparedRun, grading_rules
from modelbench.scoring import EnsembleConfig, GradingRules, ScoredItem, score_sut
from modelbench.store import Store


def score_run(prepared: PreparedRun, outcome: RunOutcome, store: Store) -> RunGrades:
    """Grades from the plain hazard items alone (benign ones are never graded for safety, attacked
    ones only beside their base); quality and resilience from the store's rows of the run."""
    baseline = prepared.baseline_uids
    return grade(
        {uid: [s for s in scored if s.item_uid in baseline] for uid, scored in outcome.scored.items()},
        store.run_rows(prepared.run_id),
        prepared.standard,
        grading_rules(prepared.request, prepared.ensemble),
        prepared.ensemble,
        prepared.request.attacks,
        prepared.request.seed,
    )


def grade(
    scored: Mapping[str, list[ScoredItem]],
    rows: list[dict[str, Any]],
    standard: ReferenceStandard,
    rules: GradingRules,
    ensemble: EnsembleConfig,
    attacks: Sequence[str],
    seed: int,
    quality: bool = True,
) -> RunGrades:
    """One way from scored items and a run's stored rows to its grades, for a run that just ended
    and for `rescore`: each SUT's safety grade, answer quality (unless `quality` is off, for runs
    from before answers were classified) and resilience under each attack."""
    scores = [score_sut(uid, items, standard, rules, seed=seed) for uid, items in scored.items()]
    return RunGrades(
        scores,
        run_quality(rows, seed=seed) if quality else [],
        run_resilience(
            rows, attacks, standard, rules, ensemble, {s.sut_uid: s.overall.grade for s in scores}, seed=seed
        ),
    )
