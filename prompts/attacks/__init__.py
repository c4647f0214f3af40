"""Jailbreak attacks: registered transforms from a test item to attacked items (see `base`)."""

from modelbench.core import ATTACK_PREFIX, is_attacked
from modelbench.prompts.attacks.base import (
    Attack,
    AttackLink,
    AttackSpec,
    Decoded,
    Variant,
    attack,
    attack_link,
    attacked_item,
    attacked_items,
    judged_exchange,
    make_attack,
    parse_attacks,
    registered_attacks,
    unregister_attack,
)

# The built-ins register in the order `modelbench list attacks` shows them.
from modelbench.prompts.attacks.templates import gptfuzz_templates  # isort: skip
from modelbench.prompts.attacks import competing, encodings  # noqa: F401  # isort: skip
from modelbench.prompts.attacks.rewrite import REWRITE_PREFIX, PastTenseAttack, clean_rewrite  # isort: skip

__all__ = [
    "ATTACK_PREFIX",
    "Attack",
    "AttackLink",
    "AttackSpec",
    "PastTenseAttack",
    "REWRITE_PREFIX",
    "Decoded",
    "Variant",
    "attack",
    "attack_link",
    "attacked_item",
    "attacked_items",
    "clean_rewrite",
    "gptfuzz_templates",
    "is_attacked",
    "judged_exchange",
    "make_attack",
    "parse_attacks",
    "registered_attacks",
    "unregister_attack",
]
