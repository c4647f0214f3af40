"""A named set of test items (the item itself is a core type: `modelbench.core.TestItem`)."""

from dataclasses import dataclass, field

from modelbench.core import TestItem

__all__ = ["PromptSet", "TestItem"]


@dataclass(frozen=True)
class PromptSet:
    """Items under a name: a built-in set (`modelbench.prompts.sets`) or an imported file
    (`modelbench.prompts.importers`); both build one, so it lives beside the item."""

    name: str
    description: str
    items: list[TestItem]
    # Rows left out of an imported file with --skip-invalid: reason -> count.
    skipped: dict[str, int] = field(default_factory=dict)
