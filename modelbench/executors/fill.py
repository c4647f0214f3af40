"""What the Ray phase of a run did, in the terms of the local engine's outcome and of the record.

After the workers have filled the store, the local engine runs over the same items, finds every
response and verdict stored, and scores: one code path for scores, records and reports. It would
count the workers' new work as reused, so `merge_into` moves it back to new; the failures the
workers met (which the store does not return, so that a next run retries them) reach the engine
through `made`, as this run's.
"""

import time
from dataclasses import dataclass, field

from modelbench.engine import MadeElsewhere, RunOutcome
from modelbench.executors.units import UnitResult
from modelbench.reports import RayExecution, UnitTiming


@dataclass
class SUTFill:
    """One SUT's new gradable responses (failures are the engine's to count, through `made`)."""

    responses_new: int = 0
    completion_tokens: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    first_start: float | None = None
    last_end: float | None = None
    # Summed over units, as each worker measured them: answering only (see `UnitResult`).
    worker_generation_s: float = 0.0
    worker_tokens: int = 0

    @property
    def wall_s(self) -> float:
        """From the SUT's first unit sent to its last stored: slot waits and grading included."""
        if self.first_start is None or self.last_end is None:
            return 0.0
        return self.last_end - self.first_start


@dataclass
class UnitCounts:
    """One unit's new rows, for the progress bars."""

    answered: int = 0
    failed: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)


@dataclass
class FillResult:
    """What the Ray phase made (`modelbench.runner.Filled`): the engine's `made`, `merge_into` its
    outcome, and the record's executor section (`record`)."""

    # The cluster and plan as the fill began; `record` adds the units and their timing.
    executor: RayExecution
    suts: dict[str, SUTFill]
    verdicts_new: int = 0  # valid ones
    made: MadeElsewhere = field(default_factory=MadeElsewhere)
    units: list[UnitTiming] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None

    def dispatched(self, sut_uid: str) -> None:
        fill = self.suts[sut_uid]
        if fill.first_start is None:
            fill.first_start = time.perf_counter()

    def add(self, result: UnitResult, items: int) -> UnitCounts:
        """Count a unit the driver has just stored."""
        fill = self.suts[result.sut_uid]
        fill.last_end = time.perf_counter()
        fill.worker_generation_s += result.generation_s
        fill.worker_tokens += result.completion_tokens
        counts = UnitCounts(answered=len(result.responses))
        for key, response in result.responses:
            if response.gradable:
                fill.responses_new += 1
                fill.completion_tokens += response.completion_tokens or 0
                fill.outcomes[response.outcome] = fill.outcomes.get(response.outcome, 0) + 1
            else:
                counts.failed += 1
                self.made.responses[key] = response
        for key, _, verdict in result.verdicts:
            uid = verdict.evaluator_uid
            counts.verdicts[uid] = counts.verdicts.get(uid, 0) + 1
            if verdict.valid:
                self.verdicts_new += 1
            else:
                counts.invalid[uid] = counts.invalid.get(uid, 0) + 1
                self.made.verdicts[key] = verdict
        self.units.append(
            UnitTiming(
                unit=result.index,
                sut=result.sut_uid,
                items=items,
                answered=counts.answered,
                judged=len(result.verdicts),
                worker=result.worker,
                start_s=round(result.started_at - self.executor.started_at_unix, 3),
                wall_s=round(result.wall_s, 3),
                generation_s=round(result.generation_s, 3),
                tokens_per_s=round(result.completion_tokens / result.generation_s, 1)
                if result.generation_s > 0 and result.completion_tokens
                else None,
                built=result.built,
                build_s=round(result.build_s, 3),
            )
        )
        return counts

    def merge_into(self, outcome: RunOutcome) -> None:
        """The engine found the workers' rows in the store: count them as this run's new work."""
        for uid, fill in self.suts.items():
            stats = outcome.sut_stats.get(uid)
            if stats is None:
                continue
            stats.responses_new += fill.responses_new
            stats.responses_reused -= fill.responses_new
            stats.completion_tokens += fill.completion_tokens
            for name, n in fill.outcomes.items():
                stats.outcomes[name] = stats.outcomes.get(name, 0) + n
            # Per worker, as a local run measures one device: comparable with a local run's
            # tokens/s. The aggregate over all workers is in the record's executor section.
            if fill.worker_generation_s:
                stats.generation_s = fill.worker_generation_s
        outcome.verdicts_new += self.verdicts_new
        outcome.verdicts_reused -= self.verdicts_new

    def record(self) -> RayExecution:
        """The record's `executor` section: the cluster, the workers, and every unit's timing."""
        walls = [u.wall_s for u in self.units]
        return self.executor.model_copy(
            update={
                "wall_s": round((self.ended or time.perf_counter()) - self.started, 3),
                "units_run": len(self.units),
                "model_loads": sum(1 for u in self.units if u.built),
                "unit_wall_s": {
                    "min": min(walls, default=0.0),
                    "mean": round(sum(walls) / len(walls), 3) if walls else 0.0,
                    "max": max(walls, default=0.0),
                },
                "units": list(self.units),
                # Every worker together: tokens over the SUT's wall time on the cluster.
                "aggregate_tokens_per_s": {
                    uid: round(fill.completion_tokens / fill.wall_s, 1)
                    for uid, fill in self.suts.items()
                    if fill.wall_s > 0 and fill.completion_tokens
                },
            }
        )
