"""The async run engine: keep every SUT and evaluator busy, never redo or lose stored work.

Per SUT, items whose responses are already stored go straight to grading; the rest are sorted by
length (so batches pad little), chunked to the SUT's batch size, and sent with up to
`sut.concurrency` calls in flight (one big batch at a time for a local model, many single items
for an API). Each evaluator has its own queue and worker, so responses are graded as they arrive
and a slow evaluator never stalls a fast one. One writer task owns all inserts and commits them
in batches: SQLite then costs a commit per burst, not per item, and a crash loses only work that
finished in the last few milliseconds.
"""

import asyncio
import logging
import time
from collections import deque
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
WRITER_MAX_OPS = 1024


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


def verdict_key(evaluator: Evaluator, response_key: str, response_text: str) -> str:
    """The response text is part of the key: a regenerated response never inherits old verdicts."""
    return stable_hash("verdict", evaluator.uid, evaluator.fingerprint(), response_key, response_text)


@dataclass
class SUTStats:
    responses_new: int = 0
    responses_reused: int = 0
    response_errors: int = 0
    generation_s: float = 0.0
    completion_tokens: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

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
    keys: dict[str, dict[str, str]] = field(default_factory=dict)  # sut uid -> item uid -> response key


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
        flush_interval_s: float = 0.02,
    ):
        if not evaluators:
            raise UserError("at least one grader is needed")
        self.store = store
        self.suts = list(suts)
        self.evaluators = list(evaluators)
        self.ensemble = ensemble
        self.run_id = run_id
        self.progress = progress or NullProgress()
        self.flush_interval_s = flush_interval_s
        self._verdicts: dict[tuple[str, str], Verdict] = {}
        self._verdicts_new = 0
        self._verdicts_reused = 0
        self._writes: asyncio.Queue = asyncio.Queue()

    async def run(self, items: Sequence[TestItem]) -> RunOutcome:
        self.store.put_items(items)
        self._writes = asyncio.Queue()
        writer = asyncio.create_task(self._writer(), name="writer")
        queues: dict[str, asyncio.Queue] = {e.uid: asyncio.Queue() for e in self.evaluators}
        for evaluator in self.evaluators:
            self.progress.start(f"grade {evaluator.uid}", len(items) * len(self.suts))
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
        finished = False
        try:
            await asyncio.gather(*producers)
            for queue in queues.values():
                await queue.put(None)
            await asyncio.gather(*graders)
            await self._writes.put(None)
            await writer
            finished = True
        finally:
            if not finished:
                for sut in self.suts:
                    sut.cancel()  # a local model stops generating at its next token
            for task in [*producers, *graders]:
                task.cancel()
            if not writer.done():
                # Interrupted: flush what finished, so that it is never done twice.
                writer.cancel()
                self._flush_now()
            for sut in self.suts:
                await sut.aclose()
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
            keys=keys,
        )

    # -- writing -------------------------------------------------------------------------------
    def _apply(self, op: tuple[str, list]) -> None:
        kind, rows = op
        if kind == "responses":
            self.store.put_responses(rows, commit=False)
        else:
            self.store.put_verdicts(rows, commit=False)

    async def _writer(self) -> None:
        while True:
            op = await self._writes.get()
            if op is None:
                return
            self._apply(op)
            done = False
            for _ in range(WRITER_MAX_OPS):
                if self._writes.empty():
                    break
                nxt = self._writes.get_nowait()
                if nxt is None:
                    done = True
                    break
                self._apply(nxt)
            self.store.commit()
            if done:
                return
            await asyncio.sleep(self.flush_interval_s)

    def _flush_now(self) -> None:
        while not self._writes.empty():
            op = self._writes.get_nowait()
            if op is not None:
                self._apply(op)
        self.store.commit()

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
                self._fan_out(queues, _Graded(item, keys[item.uid], response))
        if not pending:
            return
        # Longest first: the slowest batches start early, and neighbours pad little.
        pending.sort(key=lambda item: len(item.text), reverse=True)
        size = max(1, sut.batch_size)
        batches = deque(pending[start : start + size] for start in range(0, len(pending), size))

        async def worker() -> None:
            while batches:
                batch = batches.popleft()
                answers = await self._call(sut, batch)
                self._writes.put_nowait(("responses", [(keys[r.item_uid], r) for r in answers]))
                for item, response in zip(batch, answers, strict=True):
                    responses[item.uid] = response
                    stats.responses_new += 1
                    stats.outcomes[response.outcome] = stats.outcomes.get(response.outcome, 0) + 1
                    if not response.gradable:
                        stats.response_errors += 1
                    stats.completion_tokens += response.completion_tokens or 0
                    self._fan_out(queues, _Graded(item, keys[item.uid], response))
                self.progress.advance(label, len(batch))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(max(1, min(sut.concurrency, len(batches))))))
        stats.generation_s = time.perf_counter() - started

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

    def _fan_out(self, queues: dict[str, asyncio.Queue], graded: _Graded) -> None:
        for queue in queues.values():
            queue.put_nowait(graded)

    # -- evaluator side ------------------------------------------------------------------------
    async def _grade_worker(self, evaluator: Evaluator, queue: asyncio.Queue) -> None:
        label = f"grade {evaluator.uid}"
        done = False
        while not done:
            first = await queue.get()
            if first is None:
                break
            batch: list[_Graded] = [first]
            while len(batch) < evaluator.batch_size and not queue.empty():
                nxt = queue.get_nowait()
                if nxt is None:
                    done = True
                    break
                batch.append(nxt)
            await self._grade_batch(evaluator, batch)
            self.progress.advance(label, len(batch))

    async def _grade_batch(self, evaluator: Evaluator, batch: list[_Graded]) -> None:
        gradable = [g for g in batch if g.response.gradable]
        if not gradable:
            return
        vkeys = {
            g.response_key: verdict_key(evaluator, g.response_key, g.response.text or "") for g in gradable
        }
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
        self._writes.put_nowait(
            (
                "verdicts",
                [(vkeys[g.response_key], g.response_key, v) for g, v in zip(missing, verdicts, strict=True)],
            )
        )
        self._verdicts_new += len(missing)
        for g, v in zip(missing, verdicts, strict=True):
            self._verdicts[(g.response_key, evaluator.uid)] = v

    def _score(self, item: TestItem, key: str, response: SUTResponse) -> ScoredItem:
        if not response.gradable:
            return ScoredItem(item_uid=item.uid, hazard=item.hazard, persona=item.persona, score=None)
        member = [self._verdicts[(key, e.uid)] for e in self.evaluators]
        return ScoredItem(
            item_uid=item.uid, hazard=item.hazard, persona=item.persona, score=combine(member, self.ensemble)
        )
