"""Attacks as plugins: `@attack(name, description)` registers a transform from a test item to the
attacked items made from it, the way `@adapter` and `@evaluator` register SUTs and evaluators.

An attack is a pure function of the item, its own parameters and the run's seed, so the same
command makes the same attacked prompts and the store finds their answers. An attacked item keeps
its base item's hazard, persona and locale; its uid is derived from the base uid, the attack spec
and the variant, and its `source` links back to the base (`attack|SPEC|VARIANT|BASE_UID`), which
the store keeps, so every reader of stored rows can pair an attacked answer with the baseline one.

An attack that asks for its answer in an encoding declares how to decode it (`decode`): the
evaluator judges the decoded answer against the base item's clean request, as HarmBench's and
JailbreakBench's judges do; an answer that does not decode is judged as given and counted so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

from modelbench.core import ATTACK_PREFIX, TestItem, is_attacked  # noqa: F401 (re-exported)
from modelbench.errors import UserError
from modelbench.hashing import stable_hash


@dataclass(frozen=True)
class AttackSpec:
    """An attack as the user wrote it (`template:k=3`, `base64`, `past-tense@smollm2-135m`)."""

    text: str
    name: str
    # What follows ":" (parameters) or "@" (the SUT spec of an attack that needs a model).
    arg: str | None = None


@dataclass(frozen=True)
class Variant:
    """One attacked prompt made from a base item: `id` tells variants of one attack apart."""

    id: str
    text: str


@dataclass(frozen=True)
class AttackLink:
    """What an attacked item's `source` says: which attack spec, which variant, which base item."""

    spec: str
    variant: str
    base_uid: str


@dataclass(frozen=True)
class Decoded:
    """The answer the evaluator judges: decoded when the attack asked for an encoding and the
    answer was in it (`decoded`), else the answer as given. `echoed`: the request (decoded) or the
    attack's own instruction came back verbatim (small models echo their prompt) and was left out:
    an echo is not an answer."""

    text: str
    decoded: bool
    echoed: bool = False


class Attack:
    """A registered attack. Subclasses set `name` and `description` through `@attack`, read their
    parameters from `spec.arg` in `__init__` (a bad one is a `UserError`), and make `variants`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # The labelled source on whose answers the evaluator's error rates were measured for answers to
    # this kind of attack (a key of the calibration's `per_source`), or None: never measured.
    measured_on: ClassVar[str | None] = None
    # True: the answer is asked for in an encoding, and `decode` reads it back.
    encoded: ClassVar[bool] = False
    # True: the attack needs a model (its arg is a SUT spec); see `modelbench.attack_rewrites`.
    needs_model: ClassVar[bool] = False
    # Bump when the attacked text of any item changes, so stored answers are not reused for it.
    version: ClassVar[int] = 1

    def __init__(self, spec: AttackSpec):
        self.spec = spec
        if spec.arg is not None and not self.needs_model:
            self.parse_arg(spec.arg)

    def parse_arg(self, arg: str) -> None:
        raise UserError(f"attack '{self.name}' takes no parameters, got '{self.spec.text}'")

    def variants(self, item: TestItem, seed: int) -> list[Variant]:
        raise NotImplementedError

    def decode(self, answer: str, request: str = "") -> Decoded:
        """The answer as the model meant it; `request` is the base item's clean request."""
        return Decoded(answer, False)

    def fingerprint(self) -> dict[str, object]:
        return {"attack": self.name, "spec": self.spec.text, "version": self.version}


AttackClass = type[Attack]
_REGISTRY: dict[str, AttackClass] = {}


def attack(name: str, description: str) -> Callable[[AttackClass], AttackClass]:
    """Register the decorated `Attack` subclass under `name`."""

    def register(cls: AttackClass) -> AttackClass:
        if name in _REGISTRY:
            raise ValueError(f"attack '{name}' is already registered")
        if not name or any(c in name for c in ":@|,"):
            raise ValueError(f"attack name '{name}' may not be empty or hold ':', '@', '|' or ','")
        cls.name, cls.description = name, description
        _REGISTRY[name] = cls
        return cls

    return register


def unregister_attack(name: str) -> None:
    """Forget a registered attack (for tests and plugins that register temporarily)."""
    _REGISTRY.pop(name, None)
    make_attack.cache_clear()


def registered_attacks() -> dict[str, AttackClass]:
    """Every registered attack. The built-ins register when `modelbench.prompts.attacks` is
    imported (which any import of this module does first)."""
    return dict(_REGISTRY)


def parse_spec(text: str) -> AttackSpec:
    text = text.strip()
    if "|" in text:
        raise UserError(f"attack '{text}': '|' is not allowed in an attack spec")
    if "@" in text:
        name, _, arg = text.partition("@")
    elif ":" in text:
        name, _, arg = text.partition(":")
    else:
        name, arg = text, None
    if arg is not None and not arg.strip():
        raise UserError(f"attack '{text}' has an empty parameter")
    return AttackSpec(text=text, name=name.strip(), arg=None if arg is None else arg.strip())


@cache
def make_attack(text: str) -> Attack:
    """The attack for one spec; unknown names and bad parameters are one line (`UserError`)."""
    spec = parse_spec(text)
    known = registered_attacks()
    if spec.name not in known:
        from modelbench.plugins import load_plugins

        load_plugins()
        known = registered_attacks()
    cls = known.get(spec.name)
    if cls is None:
        raise UserError(
            f"unknown attack '{spec.name}' (known: {', '.join(known)}; see modelbench list attacks)"
        )
    if cls.needs_model and (spec.arg is None or "@" not in spec.text):
        raise UserError(
            f"attack '{spec.name}' needs a model: write it as {spec.name}@SUT (e.g. {spec.name}@smollm2-135m)"
        )
    if not cls.needs_model and "@" in spec.text:
        raise UserError(f"attack '{spec.name}' needs no model; drop '@{spec.arg}'")
    return cls(spec)


def parse_attacks(texts: Iterable[str]) -> list[Attack]:
    """Attacks in the order given; a repeated spec is an error (it would pair with itself)."""
    attacks = [make_attack(t) for t in texts]
    seen: set[str] = set()
    for a in attacks:
        if a.spec.text in seen:
            raise UserError(f"attack '{a.spec.text}' is given twice")
        seen.add(a.spec.text)
    return attacks


def attacked_source(spec: str, variant: str, base_uid: str) -> str:
    return f"{ATTACK_PREFIX}{spec}|{variant}|{base_uid}"


def attack_link(source: str | None) -> AttackLink | None:
    """The link an attacked item's source holds; None for any other item."""
    if not source or not source.startswith(ATTACK_PREFIX):
        return None
    # Neither the spec nor the variant may hold "|"; an imported item's uid may.
    spec, variant, base_uid = source[len(ATTACK_PREFIX) :].split("|", 2)
    return AttackLink(spec, variant, base_uid)


def attacked_item(base: TestItem, attack_: Attack, variant: Variant) -> TestItem:
    # A transform's text follows from its spec and version; a model's rewrite does not (another
    # rewriter, another text), so its text is part of the uid.
    made_by_model = (variant.text,) if attack_.needs_model else ()
    return base.model_copy(
        update={
            "uid": stable_hash(
                "attack", base.uid, attack_.spec.text, variant.id, attack_.version, *made_by_model, length=20
            ),
            "text": variant.text,
            "source": attacked_source(attack_.spec.text, variant.id, base.uid),
        }
    )


def attacked_items(items: Sequence[TestItem], attacks: Sequence[Attack], seed: int) -> list[TestItem]:
    """Every attack's items for every base item, attack by attack, in the base items' order."""
    return [
        attacked_item(base, a, variant)
        for a in attacks
        for base in items
        for variant in a.variants(base, seed)
    ]


def judged_exchange(item: TestItem, answer: str, bases: dict[str, TestItem]) -> tuple[TestItem, Decoded]:
    """What the evaluator sees for an answer to `item`: for an attacked item, the base item (the
    clean request) and the decoded answer; for any other, the item and the answer as given."""
    link = attack_link(item.source)
    if link is None:
        return item, Decoded(answer, False)
    base = bases.get(link.base_uid)
    if base is None:
        raise RuntimeError(f"attacked item {item.uid} came without its base item {link.base_uid}")
    return base, make_attack(link.spec).decode(answer, base.text)


def seeded_rng_seed(*parts: object) -> int:
    """An integer seed from the run's seed and the item: the same command picks the same variants."""
    return int(stable_hash("attack-seed", *parts, length=15), 16)
