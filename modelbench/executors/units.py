"""Work units: what the driver cuts a run into, what a worker sends back, and the store a worker's
engine writes to.

The driver reads the store once, per SUT: an item whose response and every verdict are stored is
done; an item whose response is stored but some verdict is not goes out with its response (the
worker only judges it); the rest go out to be answered and judged. Pending items are sorted by
length, longest first (as the engine sorts them, so a model's batches pad little), and cut into
units of `unit_size` items. Keys are the engine's own (`response_key`, `verdict_key`).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelbench.core import SUTResponse, TestItem, Verdict
from modelbench.engine import LOOKUP_CHUNK, response_key, verdict_key
from modelbench.graders import Evaluator
from modelbench.prompts.attacks import attack_link, judged_exchange
from modelbench.store import Store
from modelbench.suts import SUT

DEFAULT_UNIT_SIZE = 256


@dataclass
class Unit:
    """(SUT, a length-sorted chunk of items): answer what has no stored response, judge the rest."""

    index: int
    sut_uid: str
    items: list[TestItem]
    # Stored gradable responses of items that only need judging, and their stored valid verdicts.
    responses: dict[str, SUTResponse] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    # The base items of the unit's attacked items: their clean requests are what the evaluators see.
    bases: list[TestItem] = field(default_factory=list)

    @property
    def to_answer(self) -> int:
        return len(self.items) - len(self.responses)


@dataclass
class UnitResult:
    """What a worker made for one unit: rows for the driver to store, and how it went."""

    index: int
    sut_uid: str
    responses: list[tuple[str, SUTResponse]] = field(default_factory=list)
    verdicts: list[tuple[str, str, Verdict]] = field(default_factory=list)
    worker: str = ""
    started_at: float = 0.0  # time.time() on the worker
    wall_s: float = 0.0
    # The unit's answering time and tokens as the worker's engine measured them (no grading, no
    # wait for a slot): what a local run's tokens/s counts, so the two compare.
    generation_s: float = 0.0
    completion_tokens: int = 0
    # The SUT and evaluators were built (a model loaded) for this unit: the worker's first.
    built: bool = False
    build_s: float = 0.0
    # A one-line reason the unit could not run (a fingerprint that differs from the driver's, a
    # model that is not on the worker): the run stops with it.
    problem: str | None = None


@dataclass
class Plan:
    units: list[Unit]
    # Per SUT, items whose response is stored; per evaluator, stored verdicts (over all SUTs).
    responses_stored: dict[str, int]
    verdicts_stored: dict[str, int]


def plan_units(
    store: Store,
    suts: Sequence[SUT],
    evaluators: Sequence[Evaluator],
    items: Sequence[TestItem],
    unit_size: int = DEFAULT_UNIT_SIZE,
) -> Plan:
    """Units for the work the store does not hold yet, SUT by SUT, longest items first."""
    units: list[Unit] = []
    responses_stored = {sut.uid: 0 for sut in suts}
    verdicts_stored = {e.uid: 0 for e in evaluators}
    by_uid = {item.uid: item for item in items}
    for sut in suts:
        pending: list[tuple[TestItem, str | None, SUTResponse | None, dict[str, Verdict]]] = []
        for start in range(0, len(items), LOOKUP_CHUNK):
            chunk = items[start : start + LOOKUP_CHUNK]
            keys = [response_key(sut, item) for item in chunk]
            stored = store.get_responses(keys)
            responses_stored[sut.uid] += len(stored)
            vkeys = {
                key: [
                    verdict_key(e, key, judged_exchange(item, stored[key].text or "", by_uid)[1].text)
                    for e in evaluators
                ]
                for item, key in zip(chunk, keys, strict=True)
                if key in stored
            }
            found = store.get_verdicts([k for ks in vkeys.values() for k in ks])
            for item, key in zip(chunk, keys, strict=True):
                if key not in stored:
                    pending.append((item, None, None, {}))
                    continue
                have = {k: found[k] for k in vkeys[key] if k in found}
                for verdict in have.values():
                    verdicts_stored[verdict.evaluator_uid] = verdicts_stored.get(verdict.evaluator_uid, 0) + 1
                if len(have) < len(evaluators):
                    pending.append((item, key, stored[key], have))
        pending.sort(key=lambda row: len(row[0].text), reverse=True)
        size = max(1, unit_size)
        for start in range(0, len(pending), size):
            rows = pending[start : start + size]
            unit = Unit(len(units), sut.uid, [row[0] for row in rows])
            links = (attack_link(row[0].source) for row in rows)
            unit.bases = [by_uid[uid] for uid in dict.fromkeys(link.base_uid for link in links if link)]
            for _, key, response, have in rows:
                if key is not None and response is not None:
                    unit.responses[key] = response
                    unit.verdicts.update(have)
            units.append(unit)
    return Plan(units, responses_stored, verdicts_stored)


class UnitStore:
    """The store a worker's engine sees: what the driver sent (stored responses and verdicts of
    the unit's items), and a list of what the engine writes, for the driver to store. Only the
    driver writes the real store."""

    def __init__(self, responses: dict[str, SUTResponse], verdicts: dict[str, Verdict]):
        self.known_responses = responses
        self.known_verdicts = verdicts
        self.new_responses: list[tuple[str, SUTResponse]] = []
        self.new_verdicts: list[tuple[str, str, Verdict]] = []

    def get_responses(self, keys: Sequence[str]) -> dict[str, SUTResponse]:
        return {k: self.known_responses[k] for k in keys if k in self.known_responses}

    def get_verdicts(self, keys: Sequence[str]) -> dict[str, Verdict]:
        return {k: self.known_verdicts[k] for k in keys if k in self.known_verdicts}

    def put_responses(
        self, keyed: list[tuple[str, SUTResponse]], run_id: Any = None, commit: bool = True
    ) -> None:
        self.new_responses.extend(keyed)

    def put_verdicts(self, keyed: list[tuple[str, str, Verdict]], commit: bool = True) -> None:
        self.new_verdicts.extend(keyed)

    # The run's bookkeeping (items, links, item scores) is the driver's engine's job.
    def put_items(self, items: Any) -> None:
        pass

    def link_responses(self, run_id: str, rows: Any, commit: bool = True) -> None:
        pass

    def put_item_scores(self, run_id: str, rows: Any, commit: bool = True) -> None:
        pass

    def commit(self) -> None:
        pass
