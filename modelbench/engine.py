"""The async run engine: feed every SUT, grade responses as they arrive, never redo stored work.

Per SUT, items whose responses are already stored go straight to grading; the rest are sorted by
length (so batches pad little), chunked to the SUT's batch size and sent. Every finished batch is
committed before its responses are handed on, so an interrupted run resumes where it stopped.
Each evaluator has its own queue and worker, so a slow evaluator never stalls a fast one.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modelbench.errors import UserError
from modelbench.graders.base import Evaluator, Exchange, Verdict
from modelbench.graders.ensemble import EnsembleConfig, combine
from modelbench.graders.scoring import ScoredItem
from modelbench.hashing import stable_hash
from modelbench.prompts.items import TestItem
from modelbench.store import Store
from modelbench.suts.base import SUT, SUTResponse

log = logging.getLogger("modelbench")


class ProgressSink(Protocol):
    def start(self, label: str, total: int, done: int = 0) -> None: ...
    def advance(self, label: str, n: int) -> None: ...


class NullProgress:
    def start(self, label: str, total: int, done: int = 0) -> None:
        pass

    def advance(self, label: str, n: int) -> None:
        pass


def response_key(sut: SUT, item: TestItem) -> str:
    return stable_hash("response", sut.uid, sut.fingerprint(), item.uid, item.text)


def verdict_key(evaluator: Evaluator, response_key: str) -> str:
    return stable_hash("verdict", evaluator.uid, evaluator.fingerprint(), response_key)


@dataclass
class SUTStats:
    responses_new: int = 0
    responses_reused: int = 0
    response_errors: int = 0
    generation_s: float = 0.0
    completion_tokens: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        if self.generation_s <= 0 or not self.completion_tokens:
            return None
        return self.completion_tokens / self.generation_s


@dataclass
class RunOutcome:
    scored: dict[str, list[ScoredItem]]
    sut_stats: dict[str, SUTStats]
    verdicts_new: int = 0
    verdicts_reused: int = 0
    responses: dict[str, dict[str, SUTResponse]] = field(default_factory=dict)


@dataclass
class _Graded:
    """A response travelling to the evaluators."""

    item: TestItem
    response_key: str
    response: SUTResponse


class Engine:
    def __init__(
        self,
        store: Store,
        suts: Sequence[SUT],
        evaluators: Sequence[Evaluator],
        ensemble: EnsembleConfig,
        run_id: str,
        progress: ProgressSink | None = None,
    ):
        if not evaluators:
            raise UserError("at least one grader is needed")
        self.store = store
        self.suts = list(suts)
        self.evaluators = list(evaluators)
        self.ensemble = ensemble
        self.run_id = run_id
        self.progress = progress or NullProgress()
        self._verdicts: dict[tuple[str, str], Verdict] = {}
        self._verdicts_new = 0
        self._verdicts_reused = 0

    async def run(self, items: Sequence[TestItem]) -> RunOutcome:
        self.store.put_items(items)
        queues = {e.uid: asyncio.Queue() for e in self.evaluators}
        total_graded = len(items) * len(self.suts)
        for evaluator in self.evaluators:
            self.progress.start(f"grade {evaluator.uid}", total_graded)
        graders = [
            asyncio.create_task(self._grade_worker(e, queues[e.uid]), name=f"grade-{e.uid}")
            for e in self.evaluators
        ]
        stats = {sut.uid: SUTStats() for sut in self.suts}
        responses: dict[str, dict[str, SUTResponse]] = {sut.uid: {} for sut in self.suts}
        keys: dict[str, dict[str, str]] = {sut.uid: {} for sut in self.suts}
        producers = [
            asyncio.create_task(
                self._respond_all(sut, items, queues, stats[sut.uid], responses[sut.uid], keys[sut.uid]),
                name=f"sut-{sut.uid}",
            )
            for sut in self.suts
        ]
        try:
            await asyncio.gather(*producers)
            for queue in queues.values():
                await queue.put(None)
            await asyncio.gather(*graders)
        finally:
            for task in producers + graders:
                task.cancel()
        scored = {
            sut.uid: [
                self._score(item, keys[sut.uid][item.uid], responses[sut.uid][item.uid]) for item in items
            ]
            for sut in self.suts
        }
        return RunOutcome(
            scored=scored,
            sut_stats=stats,
            verdicts_new=self._verdicts_new,
            verdicts_reused=self._verdicts_reused,
            responses=responses,
        )

    # -- SUT side ------------------------------------------------------------------------------
    async def _respond_all(
        self,
        sut: SUT,
        items: Sequence[TestItem],
        queues: dict[str, asyncio.Queue],
        stats: SUTStats,
        responses: dict[str, SUTResponse],
        keys: dict[str, str],
    ) -> None:
        label = f"respond {sut.uid}"
        for item in items:
            keys[item.uid] = response_key(sut, item)
        stored = self.store.get_responses(keys.values())
        pending = [item for item in items if keys[item.uid] not in stored]
        stats.responses_reused = len(items) - len(pending)
        self.progress.start(label, len(items), done=stats.responses_reused)
        self.store.link_responses(self.run_id, [(sut.uid, i.uid, keys[i.uid]) for i in items])
        for item in items:
            if keys[item.uid] in stored:
                response = stored[keys[item.uid]]
                responses[item.uid] = response
                await self._fan_out(queues, _Graded(item, keys[item.uid], response))
        # Longest first: the slowest batches start early, and neighbours pad little.
        pending.sort(key=lambda item: len(item.text), reverse=True)
        size = max(1, sut.batch_size)
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            started = time.perf_counter()
            answers = await self._call(sut, batch)
            stats.generation_s += time.perf_counter() - started
            self.store.put_responses([(keys[r.item_uid], r) for r in answers])
            for item, response in zip(batch, answers, strict=True):
                responses[item.uid] = response
                stats.responses_new += 1
                if response.outcome != "ok":
                    stats.response_errors += 1
                stats.completion_tokens += response.completion_tokens or 0
                await self._fan_out(queues, _Graded(item, keys[item.uid], response))
            self.progress.advance(label, len(batch))

    async def _call(self, sut: SUT, batch: list[TestItem]) -> list[SUTResponse]:
        try:
            answers = await sut.respond(batch)
        except UserError:
            raise
        except Exception as exc:  # a failed batch is recorded per item, and the run goes on
            log.warning("%s failed on a batch of %d: %r", sut.uid, len(batch), exc)
            return [
                SUTResponse(sut_uid=sut.uid, item_uid=i.uid, outcome="error", error=repr(exc)) for i in batch
            ]
        if len(answers) != len(batch) or any(
            a.item_uid != i.uid for a, i in zip(answers, batch, strict=False)
        ):
            raise RuntimeError(f"{sut.uid} returned responses out of order or of the wrong count")
        return answers

    async def _fan_out(self, queues: dict[str, asyncio.Queue], graded: _Graded) -> None:
        for queue in queues.values():
            await queue.put(graded)

    # -- evaluator side ------------------------------------------------------------------------
    async def _grade_worker(self, evaluator: Evaluator, queue: asyncio.Queue) -> None:
        label = f"grade {evaluator.uid}"
        done = False
        while not done:
            batch: list[_Graded] = []
            first = await queue.get()
            if first is None:
                break
            batch.append(first)
            while len(batch) < evaluator.batch_size and not queue.empty():
                nxt = queue.get_nowait()
                if nxt is None:
                    done = True
                    break
                batch.append(nxt)
            await self._grade_batch(evaluator, batch)
            self.progress.advance(label, len(batch))

    async def _grade_batch(self, evaluator: Evaluator, batch: list[_Graded]) -> None:
        gradable = [g for g in batch if g.response.outcome == "ok"]
        if not gradable:
            return
        vkeys = {g.response_key: verdict_key(evaluator, g.response_key) for g in gradable}
        stored = self.store.get_verdicts(vkeys.values())
        missing = [g for g in gradable if vkeys[g.response_key] not in stored]
        self._verdicts_reused += len(gradable) - len(missing)
        for g in gradable:
            if vkeys[g.response_key] in stored:
                self._verdicts[(g.response_key, evaluator.uid)] = stored[vkeys[g.response_key]]
        if not missing:
            return
        exchanges = [Exchange(item=g.item, response=g.response.text or "") for g in missing]
        try:
            verdicts = await evaluator.judge(exchanges)
        except UserError:
            raise
        except Exception as exc:  # an evaluator failure makes its verdicts invalid, not the run
            log.warning("grader %s failed on a batch of %d: %r", evaluator.uid, len(missing), exc)
            verdicts = [Verdict(evaluator_uid=evaluator.uid, raw=f"error: {exc!r}") for _ in missing]
        self.store.put_verdicts(
            [(vkeys[g.response_key], g.response_key, v) for g, v in zip(missing, verdicts, strict=True)]
        )
        self._verdicts_new += len(missing)
        for g, v in zip(missing, verdicts, strict=True):
            self._verdicts[(g.response_key, evaluator.uid)] = v

    def _score(self, item: TestItem, key: str, response: SUTResponse) -> ScoredItem:
        if response.outcome != "ok":
            return ScoredItem(item_uid=item.uid, hazard=item.hazard, persona=item.persona, score=None)
        member = [self._verdicts[(key, e.uid)] for e in self.evaluators]
        return ScoredItem(
            item_uid=item.uid,
            hazard=item.hazard,
            persona=item.persona,
            score=combine(member, self.ensemble),
        )
