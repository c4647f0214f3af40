"""Seeded, stratified sampling so that small runs still cover every hazard and persona."""

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence

from modelbench.core import TestItem


def _round_robin(buckets: list[list[TestItem]], quota: int) -> list[TestItem]:
    picked: list[TestItem] = []
    cursors = [0] * len(buckets)
    while len(picked) < quota:
        progressed = False
        for i, bucket in enumerate(buckets):
            if len(picked) == quota:
                break
            if cursors[i] < len(bucket):
                picked.append(bucket[cursors[i]])
                cursors[i] += 1
                progressed = True
        if not progressed:
            break
    return picked


def stratified_sample(
    items: Sequence[TestItem],
    n: int,
    seed: int,
    stratum: Callable[[TestItem], Hashable] = lambda item: item.hazard,
    cell: Callable[[TestItem], Hashable] = lambda item: item.persona,
) -> list[TestItem]:
    """Pick `n` items spread evenly over strata (hazards), and within each over cells (personas).

    Strata get floor(n / k) items each, the first `n mod k` one more (a stratum with too few items
    gives its share to the others). The result keeps the input order, so samples of the same set
    line up across seeds, and the same seed always gives the same items.
    """
    if n >= len(items):
        return list(items)
    rng = random.Random(seed)
    strata: dict[Hashable, dict[Hashable, list[TestItem]]] = defaultdict(lambda: defaultdict(list))
    for item in items:
        strata[stratum(item)][cell(item)].append(item)
    keys = list(strata)
    for key in keys:
        for bucket in strata[key].values():
            rng.shuffle(bucket)
    sizes = {key: sum(len(b) for b in strata[key].values()) for key in keys}
    quotas = {key: 0 for key in keys}
    remaining = n
    open_keys = [k for k in keys if sizes[k] > 0]
    while remaining > 0 and open_keys:
        share, extra = divmod(remaining, len(open_keys))
        for i, key in enumerate(open_keys):
            give = min(share + (1 if i < extra else 0), sizes[key] - quotas[key])
            quotas[key] += give
            remaining -= give
        open_keys = [k for k in open_keys if quotas[k] < sizes[k]]
    chosen: set[str] = set()
    for key in keys:
        chosen.update(item.uid for item in _round_robin(list(strata[key].values()), quotas[key]))
    return [item for item in items if item.uid in chosen]
