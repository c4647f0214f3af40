"""Which items a run asks: the hazard sample, the benign prompts beside it (over-refusal), the
attacked versions of the hazard items (jailbreak resilience), and the shard of them this process
takes. Pure functions of the request's texts, so a resumed run and every shard agree on them.
"""

from modelbench.core import TestItem
from modelbench.errors import UserError
from modelbench.hashing import stable_hash
from modelbench.prompts import proportional_sample, stratified_sample
from modelbench.prompts.attacks import Attack, attack_link, attacked_items


def benign_sample(benign: list[TestItem], n_hazard: int, n_hazard_set: int, seed: int) -> list[TestItem]:
    """The benign prompts in proportion to the hazard prompts: the same share of each set, so
    `--max-items` keeps the two in the ratio of the full sets, and the sample keeps the benign
    set's own mix of hazards and origins (XSTest, twins)."""
    if n_hazard >= n_hazard_set:
        return list(benign)
    wanted = max(1, round(len(benign) * n_hazard / n_hazard_set))
    return proportional_sample(benign, wanted, seed)


def parse_shard(shard: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in shard.split("/"))
    except ValueError:
        raise UserError(f"--shard must look like i/N (e.g. 2/8), got '{shard}'") from None
    if not 1 <= index <= count:
        raise UserError(f"--shard {shard}: i must be between 1 and N")
    return index, count


def in_shard(item: TestItem, index: int, count: int) -> bool:
    """Hash-based, so every shard gets a similar mix of hazards and personas. An attacked item
    goes where its base item goes: the pair is scored together."""
    link = attack_link(item.source)
    uid = link.base_uid if link else item.uid
    return int(stable_hash("shard", uid, length=12), 16) % count == index - 1


def select_items(
    hazard_items: list[TestItem],
    max_items: int | None,
    seed: int,
    benign: list[TestItem] | None = None,
    attacks: list[Attack] | None = None,
) -> tuple[list[TestItem], list[TestItem]]:
    """(the hazard sample, every item of the run in order: hazard, benign, attacked). Attacks
    that need a model add their items later (`modelbench.attack_rewrites`)."""
    items = hazard_items
    if max_items is not None:
        items = stratified_sample(items, max_items, seed)
    base = items
    if benign is not None:
        items = items + benign_sample(benign, len(base), len(hazard_items), seed)
    if attacks:
        items = items + attacked_items(base, [a for a in attacks if not a.needs_model], seed)
    return base, items
