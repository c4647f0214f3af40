"""Scoring a finished fill: every answer and verdict of the run is stored and the engine has combined
the verdicts, so what is left is arithmetic: the safety grade of each SUT on the plain hazard items,
its answer quality, and its resilience under each attack. Nothing is asked of a model here."""

from modelbench.engine import RunOutcome
from modelbench.quality import run_quality
from modelbench.reports import RunGrades
from modelbench.resilience import run_resilience
from modelbench.run_plan import PreparedRun, grading_rules
from modelbench.scoring import score_sut
from modelbench.store import Store


def score_run(prepared: PreparedRun, outcome: RunOutcome, store: Store) -> RunGrades:
    """Grades from the plain hazard items alone (benign ones are never graded for safety, attacked
    ones only beside their base); quality and resilience from the store's rows of the run."""
    rules = grading_rules(prepared.request, prepared.ensemble)
    baseline, seed = prepared.baseline_uids, prepared.request.seed
    scores = [
        score_sut(uid, [s for s in scored if s.item_uid in baseline], prepared.standard, rules, seed=seed)
        for uid, scored in outcome.scored.items()
    ]
    rows = store.run_rows(prepared.run_id)
    quality = run_quality(rows, seed=seed)
    resilience = run_resilience(
        rows,
        prepared.request.attacks,
        prepared.standard,
        rules,
        prepared.ensemble,
        {s.sut_uid: s.overall.grade for s in scores},
        seed=seed,
    )
    return RunGrades(scores, quality, resilience)
