"""Attacks that need a model (`past-tense@SUT`): ask the rewriter, keep its answers, make the items.

Before the engine runs, each such attack's rewriter (a SUT of its own) is asked to rewrite every
base item of the run. Its prompts are stored as items and its answers as responses under the
engine's own keys, so a second run, or a resumed one, finds them and asks nothing again; a
failed rewrite is stored as a failure (retried next time) and leaves its base item without an
attacked item, which the resilience section counts. The cleaned rewrites then become the attacked
items, which the engine runs like any other.
"""

import asyncio
from collections.abc import Sequence

from modelbench.core import SUTResponse, TestItem
from modelbench.engine import answer_batch, response_key
from modelbench.errors import UserError
from modelbench.prompts.attacks import PastTenseAttack, Variant, attacked_item, clean_rewrite, make_attack
from modelbench.store import Store
from modelbench.suts import SUT


async def _respond(sut: SUT, items: list[TestItem]) -> list[SUTResponse]:
    """Every item answered, in order: batches of the SUT's size, up to its concurrency at once."""
    size = max(1, sut.batch_size)
    batches = [items[start : start + size] for start in range(0, len(items), size)]
    limit = asyncio.Semaphore(max(1, sut.concurrency))

    async def one(batch: list[TestItem]) -> list[SUTResponse]:
        async with limit:
            return await answer_batch(sut, batch)

    try:
        answers = await asyncio.gather(*(one(batch) for batch in batches))
    finally:
        await sut.aclose()
    return [answer for batch in answers for answer in batch]


def rewrite(
    store: Store, run_id: str, attack: PastTenseAttack, rewriter: SUT, bases: Sequence[TestItem]
) -> dict[str, str]:
    """Base uid -> cleaned rewrite for every base item whose rewrite succeeded."""
    requests = [attack.rewrite_item(base) for base in bases]
    keys = [response_key(rewriter, request) for request in requests]
    store.put_items(requests)
    stored = store.get_responses(keys)
    missing = [(request, key) for request, key in zip(requests, keys, strict=True) if key not in stored]
    answers: list[SUTResponse] = []
    if missing:
        answers = asyncio.run(_respond(rewriter, [request for request, _ in missing]))
        store.put_responses(
            [(key, answer) for (_, key), answer in zip(missing, answers, strict=True)], run_id
        )
        stored.update(
            {key: answer for (_, key), answer in zip(missing, answers, strict=True) if answer.gradable}
        )
    rewrites = {}
    for base, key in zip(bases, keys, strict=True):
        response = stored.get(key)
        text = clean_rewrite(response.text, base.text) if response is not None and response.gradable else None
        if text:
            rewrites[base.uid] = text
    if bases and not rewrites:
        why = next((a.error for a in answers if a.error), None)
        raise UserError(
            f"{attack.spec.text}: the rewriter {rewriter.uid} gave no usable rewrite for any of "
            f"{len(bases)} prompts"
            + (f" ({why})" if why else "")
            + "; its answers are stored, fix it and run again"
        )
    return rewrites


def rewritten_items(
    store: Store, run_id: str, rewriters: dict[str, SUT], bases: Sequence[TestItem]
) -> list[TestItem]:
    """The attacked items of every attack that needs a model (`rewriters`: attack spec -> SUT)."""
    items: list[TestItem] = []
    for spec, rewriter in rewriters.items():
        attack = make_attack(spec)
        assert isinstance(attack, PastTenseAttack)
        rewrites = rewrite(store, run_id, attack, rewriter, bases)
        items.extend(
            attacked_item(b, attack, Variant("", rewrites[b.uid])) for b in bases if b.uid in rewrites
        )
    return items
