"""The async run engine: keep every SUT and evaluator busy, never redo or lose stored work, and
hold no more of a run in memory than what is in flight.

Per SUT, items are looked up in the store chunk by chunk: stored responses go straight to
grading, the rest are sorted by length (so batches pad little), chunked to the SUT's batch size
and sent with up to `sut.concurrency` calls in flight (one big batch at a time for a local model,
many single items for an API). Each evaluator has its own bounded queue and worker, so responses
are graded as they arrive, a slow evaluator never stalls a fast one, and a fast SUT cannot flood
memory. When every evaluator has judged a response, the ensemble scores it and only that small
score is kept. One writer task owns all inserts and commits them in batches: SQLite costs a
commit per burst rather than per item, and a crash loses only work finished in the last moment.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modelbench.core import Exchange, SUTResponse, TestItem, Verdict, is_benign
from modelbench.errors import UserError
from modelbench.failures import ErrorGroup, ErrorTally
from modelbench.graders import Evaluator
from modelbench.hashing import stable_hash
from modelbench.prompts.attacks import judged_exchange
from modelbench.scoring import CompactScore, EnsembleConfig, ItemScore, ScoredItem, combine
from modelbench.store import Store
from modelbench.suts import SUT

log = logging.getLogger("modelbench")
WRITER_MAX_OPS = 1024
WRITER_QUEUE = 4096  # pending write operations before producers wait for the writer
WRITE_ORDER = ("responses", "links", "verdicts", "scores")
LOOKUP_CHUNK = 1000


class ProgressSink(Protocol):
    """`advance`: n more items done, of which `failed` failed; `stored` marks work found in the
    store and `skipped` items with nothing to grade (their response failed): neither may
    inflate the rate the user sees."""

    def start(self, label: str, total: int, done: int = 0) -> None: ...
    def advance(
        self, label: str, n: int, failed: int = 0, stored: bool = False, skipped: bool = False
    ) -> None: ...


class NullProgress:
    def start(self, label: str, total: int, done: int = 0) -> None:
        pass

    def advance(
        self, label: str, n: int, failed: int = 0, stored: bool = False, skipped: bool = False
    ) -> None:
        pass


async def answer_batch(sut: SUT, batch: list[TestItem]) -> list[SUTResponse]:
    """One call of a SUT on a batch: a failed batch is recorded per item (the next run retries
    those) and the run goes on; a `UserError` stops it; answers must come back in order."""
    try:
        answers = await sut.respond(batch)
    except UserError:
        raise
    except Exception as exc:
        log.warning("%s failed on a batch of %d: %r", sut.uid, len(batch), exc)
        return [SUTResponse(sut_uid=sut.uid, item_uid=i.uid, outcome="error", error=repr(exc)) for i in batch]
    if len(answers) != len(batch) or any(a.item_uid != i.uid for a, i in zip(answers, batch, strict=False)):
        raise RuntimeError(f"{sut.uid} returned responses out of order or of the wrong count")
    return answers


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
    verdicts_invalid: int = 0
    errors: list[ErrorGroup] = field(default_factory=list)

    @property
    def response_errors(self) -> int:
        return sum(s.response_errors for s in self.sut_stats.values())

    @property
    def clean(self) -> bool:
        """Every response and every verdict of this run is usable."""
        return not self.errors


@dataclass
class _Graded:
    """A response travelling to the evaluators."""

    sut_uid: str
    item: TestItem
    response_key: str
    response: SUTResponse
    # What the evaluators see: the item itself, or for an attacked item its base item (the clean
    # request); and the answer as given, or decoded when the attack asked for an encoding.
    judged_item: TestItem | None = None
    judged_text: str = ""


@dataclass
class _Pending:
    """Verdicts gathered so far for one response, until every evaluator has spoken."""

    graded: _Graded
    verdicts: dict[str, Verdict] = field(default_factory=dict)


@dataclass
class MadeElsewhere:
    """This run's failed responses and invalid verdicts that an executor made and stored before the
    engine ran (`modelbench.runner.Filled.made`). The store returns neither (failures are retried
    by the next run), so the engine takes them from here as this run's outcomes instead of asking
    again."""

    responses: dict[str, SUTResponse] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)


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
        made_elsewhere: MadeElsewhere | None = None,
        context_items: Sequence[TestItem] = (),
    ):
        if not evaluators:
            raise UserError("at least one grader is needed")
        if len({s.uid for s in suts}) != len(suts):
            raise UserError("the same SUT is given twice")
        self.store = store
        self.suts = list(suts)
        self.evaluators = list(evaluators)
        self.ensemble = ensemble
        self.run_id = run_id
        self.progress = progress or NullProgress()
        self.flush_interval_s = flush_interval_s
        self.elsewhere = made_elsewhere or MadeElsewhere()
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._scored: dict[str, list[ScoredItem]] = {}
        self._verdicts_new = 0
        self._verdicts_reused = 0
        self._verdicts_invalid = 0
        self.errors = ErrorTally()
        self._writes: asyncio.Queue = asyncio.Queue()
        # Items that are not this run's work but that its attacked items refer to (their bases).
        self._context = {item.uid: item for item in context_items}
        self._items: dict[str, TestItem] = {}

    async def run(self, items: Sequence[TestItem]) -> RunOutcome:
        self.store.put_items(items)
        self._items = {**self._context, **{item.uid: item for item in items}}
        self._writes = asyncio.Queue(maxsize=WRITER_QUEUE)
        self._scored = {sut.uid: [] for sut in self.suts}
        writer = asyncio.create_task(self._writer(), name="writer")
        queues: dict[str, asyncio.Queue] = {
            e.uid: asyncio.Queue(maxsize=max(64, 4 * e.batch_size)) for e in self.evaluators
        }
        for evaluator in self.evaluators:
            self.progress.start(f"grade {evaluator.uid}", len(items) * len(self.suts))
        graders = [
            asyncio.create_task(self._grade_worker(e, queues[e.uid]), name=f"grade-{e.uid}")
            for e in self.evaluators
        ]
        stats = {sut.uid: SUTStats() for sut in self.suts}
        producers = [
            asyncio.create_task(self._respond_all(sut, items, queues, stats[sut.uid]), name=f"sut-{sut.uid}")
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
            for closable in [*self.suts, *self.evaluators]:
                await closable.aclose()
        return RunOutcome(
            scored=self._scored,
            sut_stats=stats,
            verdicts_new=self._verdicts_new,
            verdicts_reused=self._verdicts_reused,
            verdicts_invalid=self._verdicts_invalid,
            errors=self.errors.groups(),
        )

    # -- writing -------------------------------------------------------------------------------
    def _apply(self, op: tuple[str, list]) -> None:
        kind, rows = op
        if kind == "responses":
            self.store.put_responses(rows, run_id=self.run_id, commit=False)
        elif kind == "verdicts":
            self.store.put_verdicts(rows, commit=False)
        elif kind == "links":
            self.store.link_responses(self.run_id, rows, commit=False)
        else:
            self.store.put_item_scores(self.run_id, rows, commit=False)

    def _apply_burst(self, ops: list[tuple[str, list]]) -> None:
        """A burst of write operations, one statement per kind rather than one per operation (an
        API SUT answers one item per batch, so a burst holds hundreds of one-row operations).
        Responses go first: the links and verdicts of a burst refer to them."""
        merged: dict[str, list] = {kind: [] for kind in WRITE_ORDER}
        for kind, rows in ops:
            merged[kind].extend(rows)
        for kind in WRITE_ORDER:
            if merged[kind]:
                self._apply((kind, merged[kind]))

    async def _writer(self) -> None:
        while True:
            op = await self._writes.get()
            if op is None:
                return
            burst = [op]
            done = False
            for _ in range(WRITER_MAX_OPS):
                if self._writes.empty():
                    break
                nxt = self._writes.get_nowait()
                if nxt is None:
                    done = True
                    break
                burst.append(nxt)
            self._apply_burst(burst)
            self.store.commit()
            if done:
                return
            # Wait a moment to gather the next burst, unless the queue is filling up: a commit per
            # few rows would cost more CPU than the rows themselves.
            await asyncio.sleep(self.flush_interval_s if self._writes.qsize() < WRITER_QUEUE // 2 else 0)

    def _flush_now(self) -> None:
        burst = []
        while not self._writes.empty():
            op = self._writes.get_nowait()
            if op is not None:
                burst.append(op)
        self._apply_burst(burst)
        self.store.commit()

    # -- SUT side ------------------------------------------------------------------------------
    async def _respond_all(
        self, sut: SUT, items: Sequence[TestItem], queues: dict[str, asyncio.Queue], stats: SUTStats
    ) -> None:
        label = f"respond {sut.uid}"
        self.progress.start(label, len(items))
        pending: list[TestItem] = []
        for start in range(0, len(items), LOOKUP_CHUNK):
            chunk = items[start : start + LOOKUP_CHUNK]
            keys = [response_key(sut, item) for item in chunk]
            stored = self.store.get_responses(keys)
            self._writes.put_nowait(
                ("links", [(sut.uid, i.uid, k) for i, k in zip(chunk, keys, strict=True)])
            )
            failed_elsewhere = 0
            for item, key in zip(chunk, keys, strict=True):
                if key in stored:
                    stats.responses_reused += 1
                    await self._fan_out(queues, _Graded(sut.uid, item, key, stored[key]))
                elif key in self.elsewhere.responses:
                    failed_elsewhere += self._count_new(sut, stats, item, self.elsewhere.responses[key])
                    await self._fan_out(queues, _Graded(sut.uid, item, key, self.elsewhere.responses[key]))
                else:
                    pending.append(item)
            self.progress.advance(label, sum(1 for k in keys if k in stored), stored=True)
            if failed_elsewhere:
                self.progress.advance(label, failed_elsewhere, failed=failed_elsewhere)
        if not pending:
            return
        # Longest first: the slowest batches start early, and neighbours pad little.
        pending.sort(key=lambda item: len(item.text), reverse=True)
        size = max(1, sut.batch_size)
        batches = deque(pending[start : start + size] for start in range(0, len(pending), size))
        del pending

        async def worker() -> None:
            while batches:
                batch = batches.popleft()
                answers = await self._call(sut, batch)
                keys = [response_key(sut, item) for item in batch]
                await self._writes.put(("responses", list(zip(keys, answers, strict=True))))
                failed = 0
                for item, key, response in zip(batch, keys, answers, strict=True):
                    failed += self._count_new(sut, stats, item, response)
                    await self._fan_out(queues, _Graded(sut.uid, item, key, response))
                self.progress.advance(label, len(batch), failed=failed)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(max(1, min(sut.concurrency, len(batches))))))
        stats.generation_s = time.perf_counter() - started

    def _count_new(self, sut: SUT, stats: SUTStats, item: TestItem, response: SUTResponse) -> int:
        """Count a response this run made; 1 when it failed."""
        stats.responses_new += 1
        stats.outcomes[response.outcome] = stats.outcomes.get(response.outcome, 0) + 1
        stats.completion_tokens += response.completion_tokens or 0
        if response.gradable:
            return 0
        stats.response_errors += 1
        message = response.error or ""
        if response.outcome != "error":
            message = f"{response.outcome}: {message}"
        self.errors.add("respond", sut.uid, message, item.uid)
        return 1

    async def _call(self, sut: SUT, batch: list[TestItem]) -> list[SUTResponse]:
        return await answer_batch(sut, batch)

    async def _fan_out(self, queues: dict[str, asyncio.Queue], graded: _Graded) -> None:
        # A benign prompt's answer (over-refusal) is classified by kind, never judged for safety.
        if not graded.response.gradable or is_benign(graded.item.source):
            await self._finish(graded, None)
            for evaluator in self.evaluators:  # nothing to grade: not the evaluator's failure
                self.progress.advance(f"grade {evaluator.uid}", 1, skipped=True)
            return
        graded.judged_item, decoded = judged_exchange(graded.item, graded.response.text or "", self._items)
        graded.judged_text = decoded.text
        self._pending[(graded.sut_uid, graded.item.uid)] = _Pending(graded)
        for queue in queues.values():
            await queue.put(graded)

    # -- evaluator side ------------------------------------------------------------------------
    async def _grade_worker(self, evaluator: Evaluator, queue: asyncio.Queue) -> None:
        label = f"grade {evaluator.uid}"
        done = False
        while not done:
            first = await queue.get()
            if first is None:
                break
            if queue.qsize() < evaluator.batch_size - 1:
                # Responses trickle in one at a time from API SUTs: gathering for a moment makes
                # one store lookup and one insert per batch instead of per response.
                await asyncio.sleep(self.flush_interval_s)
            batch: list[_Graded] = [first]
            while len(batch) < evaluator.batch_size and not queue.empty():
                nxt = queue.get_nowait()
                if nxt is None:
                    done = True
                    break
                batch.append(nxt)
            reused, failed = await self._grade_batch(evaluator, batch)
            if reused:
                self.progress.advance(label, reused, stored=True)
            self.progress.advance(label, len(batch) - reused, failed=failed)

    async def _grade_batch(self, evaluator: Evaluator, batch: list[_Graded]) -> tuple[int, int]:
        """Judge what is not stored yet; returns (verdicts reused, this run's verdicts invalid)."""
        vkeys = [verdict_key(evaluator, g.response_key, g.judged_text) for g in batch]
        stored = self.store.get_verdicts(vkeys)
        unstored = [(g, k) for g, k in zip(batch, vkeys, strict=True) if k not in stored]
        missing = [(g, k) for g, k in unstored if k not in self.elsewhere.verdicts]
        self._verdicts_reused += len(batch) - len(unstored)
        invalid = 0
        for g, k in unstored:  # invalid verdicts this run made elsewhere: this run's, not asked again
            if k in self.elsewhere.verdicts:
                stored[k] = self.elsewhere.verdicts[k]
                self._verdicts_new += 1
                invalid += 1
                self.errors.add("grade", evaluator.uid, stored[k].raw, g.item.uid)
        self._verdicts_invalid += invalid
        if missing:
            exchanges = [Exchange(item=g.judged_item or g.item, response=g.judged_text) for g, _ in missing]
            try:
                fresh = await evaluator.judge(exchanges)
            except UserError:
                raise
            except Exception as exc:  # an evaluator failure makes its verdicts invalid, not the run
                log.warning("grader %s failed on a batch of %d: %r", evaluator.uid, len(missing), exc)
                fresh = [Verdict(evaluator_uid=evaluator.uid, raw=f"error: {exc!r}") for _ in missing]
            await self._writes.put(
                ("verdicts", [(k, g.response_key, v) for (g, k), v in zip(missing, fresh, strict=True)])
            )
            self._verdicts_new += len(missing)
            fresh_invalid = 0
            for (g, _), verdict in zip(missing, fresh, strict=True):
                if not verdict.valid:
                    fresh_invalid += 1
                    self.errors.add("grade", evaluator.uid, verdict.raw, g.item.uid)
            self._verdicts_invalid += fresh_invalid
            invalid += fresh_invalid
            stored.update({k: v for (_, k), v in zip(missing, fresh, strict=True)})
        done: list[tuple[_Graded, ItemScore]] = []
        for g, key in zip(batch, vkeys, strict=True):
            pending = self._pending[(g.sut_uid, g.item.uid)]
            pending.verdicts[evaluator.uid] = stored[key]
            if len(pending.verdicts) == len(self.evaluators):
                del self._pending[(g.sut_uid, g.item.uid)]
                members = [pending.verdicts[e.uid] for e in self.evaluators]
                done.append((g, combine(members, self.ensemble)))
        if done:
            await self._finish_many(done)
        return len(batch) - len(unstored), invalid

    async def _finish(self, graded: _Graded, score: ItemScore | None) -> None:
        await self._finish_many([(graded, score)])

    async def _finish_many(self, finished: list[tuple[_Graded, ItemScore | None]]) -> None:
        """Store each item's score with its member verdicts; keep only the compact score."""
        await self._writes.put(("scores", [(g.sut_uid, g.item.uid, g.response_key, s) for g, s in finished]))
        for graded, score in finished:
            kept = None if score is None else CompactScore.of(score)
            item = graded.item
            self._scored[graded.sut_uid].append(ScoredItem(item.uid, item.hazard, item.persona, kept))
