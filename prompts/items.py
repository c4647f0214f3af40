"""The unit of a benchmark (one prompt for one hazard and persona) and a named set of them."""

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict


class TestItem(BaseModel):
    """A prompt to send to a SUT. `uid` is stable: the same set version and text give the same uid."""

    model_config = ConfigDict(frozen=True)
    __test__ = False  # keep pytest from collecting this class

    uid: str
    hazard: str
    subhazard: str | None = None
    persona: str
    locale: str = "en_US"
    text: str
    source: str


@dataclass(frozen=True)
class PromptSet:
    """Items under a name: a built-in set (`modelbench.prompts.sets`) or an imported file
    (`modelbench.prompts.importers`); both build one, so it lives beside the item."""

    name: str
    description: str
    items: list[TestItem]
    # Rows left out of an imported file with --skip-invalid: reason -> count.
    skipped: dict[str, int] = field(default_factory=dict)
