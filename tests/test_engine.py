"""The async engine: streaming into grading, reuse by key, failures recorded per item."""

import asyncio
import time

from modelbench import Store
from modelbench.engine import Engine
from modelbench.graders import RefusalEvaluator, Verdict
from modelbench.prompts import load_prompt_set
from modelbench.scoring import EnsembleConfig
from modelbench.suts import SUT, HuggingFaceSUT, SUTOptions, SUTResponse


class ScriptedSUT(SUT):
    """A SUT double whose answers, failures and timing the test controls."""

    def __init__(self, uid="scripted", batch_size=4, fail_items=(), raise_on_batch=None, delay=0.0):
        self.uid = uid
        self.batch_size = batch_size
        self.fail_items = set(fail_items)
        self.raise_on_batch = raise_on_batch
        self.delay = delay
        self.calls: list[list[str]] = []
        self.batch_done_at: list[float] = []

    def fingerprint(self):
        return {"adapter": "scripted"}

    def build_request(self, items):
        return [i.uid for i in items]

    async def call(self, request):
        self.calls.append(request)
        await asyncio.sleep(self.delay)
        self.batch_done_at.append(time.perf_counter())
        if self.raise_on_batch is not None and len(self.calls) - 1 == self.raise_on_batch:
            raise RuntimeError("backend exploded")
        return request

    def parse_response(self, items, native):
        return [
            SUTResponse(sut_uid=self.uid, item_uid=uid, outcome="error", error="refused by backend")
            if uid in self.fail_items
            else SUTResponse(sut_uid=self.uid, item_uid=uid, text="I can't help with that.")
            for uid in native
        ]


class TimedRefusal(RefusalEvaluator):
    def __init__(self):
        self.first_call: float | None = None
        self.batch_size = 2

    async def judge(self, exchanges):
        self.first_call = self.first_call or time.perf_counter()
        return await super().judge(exchanges)


def items(n=12):
    return load_prompt_set("mb-demo").items[:n]


def run(store, suts, evaluators, batch):
    engine = Engine(store, suts, evaluators, EnsembleConfig(), run_id="r")
    return asyncio.run(engine.run(batch))


def test_every_item_is_answered_graded_and_scored(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    sut = ScriptedSUT()
    outcome = run(store, [sut], [RefusalEvaluator()], items())
    scored = outcome.scored["scripted"]
    assert len(scored) == 12 and all(s.score is not None and s.score.is_safe for s in scored)
    assert outcome.sut_stats["scripted"].responses_new == 12
    assert outcome.verdicts_new == 12 and outcome.verdicts_reused == 0
    assert sum(len(c) for c in sut.calls) == 12 and max(len(c) for c in sut.calls) == 4
    assert store.count("responses") == 12 and store.count("verdicts") == 12


def test_grading_starts_while_the_sut_is_still_answering(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    sut = ScriptedSUT(batch_size=2, delay=0.05)
    grader = TimedRefusal()
    run(store, [sut], [grader], items(8))
    assert grader.first_call is not None and grader.first_call < sut.batch_done_at[-1]


def test_second_run_reuses_everything(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    run(store, [ScriptedSUT()], [RefusalEvaluator()], items())
    again = ScriptedSUT()
    outcome = run(store, [again], [RefusalEvaluator()], items())
    assert again.calls == []
    assert outcome.sut_stats["scripted"].responses_reused == 12
    assert outcome.verdicts_reused == 12 and outcome.verdicts_new == 0


def test_failed_items_are_not_graded_and_are_retried(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    batch = items(8)
    failing = ScriptedSUT(fail_items={batch[0].uid, batch[5].uid})
    outcome = run(store, [failing], [RefusalEvaluator()], batch)
    scores = {s.item_uid: s.score for s in outcome.scored["scripted"]}
    assert scores[batch[0].uid] is None and scores[batch[5].uid] is None
    assert outcome.sut_stats["scripted"].response_errors == 2 and outcome.verdicts_new == 6
    healthy = ScriptedSUT()
    outcome = run(store, [healthy], [RefusalEvaluator()], batch)
    assert sorted(uid for call in healthy.calls for uid in call) == sorted([batch[0].uid, batch[5].uid])
    assert all(s.score is not None for s in outcome.scored["scripted"])


def test_an_exception_in_one_batch_becomes_error_rows_and_the_run_goes_on(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    sut = ScriptedSUT(batch_size=4, raise_on_batch=1)
    outcome = run(store, [sut], [RefusalEvaluator()], items(12))
    stats = outcome.sut_stats["scripted"]
    assert stats.response_errors == 4 and stats.responses_new == 12
    errors = [r for r in store.run_rows("r") if r["outcome"] == "error"]
    assert len(errors) == 4 and all("backend exploded" in r["error"] for r in errors)
    assert sum(1 for s in outcome.scored["scripted"] if s.score is None) == 4


class FlakyGrader(RefusalEvaluator):
    """Fails (invalid verdicts, as an HTTP 400 from a grader server gives) until told otherwise."""

    def __init__(self, failing: bool):
        self.failing = failing
        self.judged = 0

    async def judge(self, exchanges):
        self.judged += len(exchanges)
        if self.failing:
            return [Verdict(evaluator_uid=self.uid, raw="HTTP 400: model not found") for _ in exchanges]
        return await super().judge(exchanges)


def test_failed_verdicts_are_retried_by_the_next_run_not_reused(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    first = run(store, [ScriptedSUT()], [FlakyGrader(failing=True)], items(6))
    assert first.verdicts_new == 6 and all(s.score.p_unsafe is None for s in first.scored["scripted"])
    grader = FlakyGrader(failing=False)
    second = run(store, [ScriptedSUT()], [grader], items(6))
    assert grader.judged == 6 and second.verdicts_reused == 0 and second.verdicts_new == 6
    assert all(s.score.valid for s in second.scored["scripted"])
    third = run(store, [ScriptedSUT()], [FlakyGrader(failing=True)], items(6))
    assert third.verdicts_reused == 6 and third.verdicts_new == 0  # valid verdicts are reused


def test_two_suts_share_nothing_but_the_items(tmp_path, tiny_llama):
    store = Store(tmp_path / "s.sqlite")
    hf = HuggingFaceSUT("tiny", tiny_llama, SUTOptions(max_new_tokens=4, batch_size=4))
    outcome = run(store, [hf, ScriptedSUT()], [RefusalEvaluator()], items(6))
    assert set(outcome.scored) == {"tiny", "scripted"}
    assert store.count("responses") == 12 and store.count("verdicts") == 12
    tokens = outcome.sut_stats["tiny"]
    assert tokens.completion_tokens > 0 and tokens.tokens_per_s > 0
