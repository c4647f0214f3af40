"""The SUT protocol: what the engine needs from any system under test.

Adapters follow ModelGauge's three steps: build the native request, call, translate the native
response. Only the middle step touches a network or an accelerator, so the other two are tested
as plain functions.
"""

from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel

from modelbench.prompts.items import TestItem

# "ok": the SUT answered. "error": no usable answer (after retries); such an item is not graded,
# is never counted as safe, and is retried by the next run of the same work.
Outcome = Literal["ok", "error"]


class SUTResponse(BaseModel):
    sut_uid: str
    item_uid: str
    outcome: Outcome = "ok"
    text: str | None = None
    error: str | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class SUT(ABC):
    """A system under test. Constructing one is cheap; heavy loading waits for the first call."""

    uid: str
    # How many items the engine hands to `respond` at once.
    batch_size: int = 1

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the answers (weights identity, generation parameters).

        It goes into the content-addressed response keys: two SUTs with equal fingerprints share
        stored responses, and any change means fresh ones.
        """

    @abstractmethod
    async def respond(self, items: list[TestItem]) -> list[SUTResponse]:
        """One response per item, in the same order. Failures become `outcome="error"` rows."""

    def metadata(self) -> dict[str, Any]:
        """Descriptive facts for records and reports (not part of the key)."""
        return {"uid": self.uid}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (clients, models)."""
