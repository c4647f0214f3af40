"""The unit of a benchmark: one prompt for one hazard and persona."""

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
