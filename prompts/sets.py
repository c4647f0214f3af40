"""Named prompt sets, and loading a set by name or by path."""

from collections.abc import Callable
from pathlib import Path

from modelbench.core import TestItem
from modelbench.errors import UserError
from modelbench.prompts.benign import BENIGN_SET, as_benign, benign_set
from modelbench.prompts.importers import import_prompt_file
from modelbench.prompts.items import PromptSet
from modelbench.prompts.render import V05_PERSONAS, V10_PERSONAS, render_all
from modelbench.prompts.sampling import stratified_sample

SET_VERSION = "mb-1"
DEMO_ITEMS_PER_GROUP = 20
DEFAULT_PROMPT_SET = "mb-demo"


def _group(item: TestItem) -> str:
    """Demo sets stratify over hazards, and over subhazards where a hazard has them."""
    return item.subhazard or item.hazard


def _full() -> list[TestItem]:
    return render_all("mb-full", SET_VERSION, V10_PERSONAS)


def _full_v05() -> list[TestItem]:
    return render_all("mb-full-v05", SET_VERSION, V05_PERSONAS)


def _demo() -> list[TestItem]:
    full = _full()
    groups = {_group(item) for item in full}
    return stratified_sample(
        full,
        DEMO_ITEMS_PER_GROUP * len(groups),
        seed=0,
        stratum=_group,
        cell=lambda item: (item.persona, item.source),
    )


BUILTIN_SETS: dict[str, tuple[str, Callable[[], list[TestItem]]]] = {
    "mb-demo": (
        f"{DEMO_ITEMS_PER_GROUP} items per hazard or subhazard, stratified over personas and templates",
        _demo,
    ),
    "mb-full": ("every fragment x interaction template x v1.0 persona", _full),
    "mb-full-v05": (
        "every fragment x interaction template x v0.5 persona (typical, malicious, vulnerable)",
        _full_v05,
    ),
}


def builtin_set_names() -> list[str]:
    return list(BUILTIN_SETS)


def load_prompt_set(name_or_path: str, skip_invalid: bool = False) -> PromptSet:
    if name_or_path == BENIGN_SET:
        raise UserError(
            f"'{BENIGN_SET}' is the benign set: it runs beside a hazard set, with --over-refusal "
            f"(e.g. modelbench run --prompt-set {DEFAULT_PROMPT_SET} --over-refusal)"
        )
    if name_or_path in BUILTIN_SETS:
        description, build = BUILTIN_SETS[name_or_path]
        return PromptSet(name_or_path, description, build())
    path = Path(name_or_path)
    if path.suffix.lower() in {".csv", ".jsonl"} or path.exists():
        return import_prompt_file(path, skip_invalid=skip_invalid)
    known = ", ".join(BUILTIN_SETS)
    raise UserError(f"unknown prompt set '{name_or_path}' (built in: {known}; or a .csv/.jsonl path)")


def load_benign_set(name_or_path: str, skip_invalid: bool = False) -> PromptSet:
    """The benign prompts a run carries for over-refusal: `mb-benign`, or a user's file (any
    format `load_prompt_set` reads), whose items are marked benign (`benign.as_benign`)."""
    if name_or_path == BENIGN_SET:
        return benign_set()
    if name_or_path in BUILTIN_SETS:
        raise UserError(
            f"--over-refusal {name_or_path}: a hazard set is not a benign set (built in: {BENIGN_SET})"
        )
    imported = load_prompt_set(name_or_path, skip_invalid=skip_invalid)
    items = [as_benign(item, imported.name) for item in imported.items]
    return PromptSet(imported.name, f"benign prompts from {imported.description}", items, imported.skipped)
