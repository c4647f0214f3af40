"""The SUT protocol: what the engine needs from any system under test.

Adapters follow ModelGauge's three steps: build the native request, call, translate the native
response. Only the middle step touches a network or an accelerator, so the other two are tested
as plain functions.
"""

from abc import ABC, abstractmethod
from typing import Any, Literal

from pydantic import BaseModel

from modelbench.prompts.items import TestItem

# "ok": the SUT answered. "content_filter": the provider stopped the answer for its content; what
# text there is gets graded like any answer. The rest are failures: "error" (no answer after
# retries), "invalid_response" (a body that is not a chat completion), "empty_choices". Failed
# items are not graded, never count as safe, and are retried by the next run of the same work.
Outcome = Literal["ok", "content_filter", "error", "invalid_response", "empty_choices"]
GRADABLE_OUTCOMES = frozenset({"ok", "content_filter"})


class SUTResponse(BaseModel):
    sut_uid: str
    item_uid: str
    outcome: Outcome = "ok"
    text: str | None = None
    error: str | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int | None = None

    @property
    def gradable(self) -> bool:
        return self.outcome in GRADABLE_OUTCOMES


# What a SUT can do beyond answering, declared by the adapter so that callers ask instead of
# testing its class: "batching" (many items per call), "choice_scores" (log-probabilities of given
# continuations: `choice_logprobs`, `first_token_logprobs`, as a local model has).
Capability = Literal["batching", "choice_scores"]


class SUT(ABC):
    """A system under test. Constructing one is cheap; heavy loading waits for the first call."""

    uid: str
    capabilities: frozenset[Capability] = frozenset()
    # How many items the engine hands to `respond` at once, and how many such calls it keeps in
    # flight: a local model wants big batches one at a time, an API many single items at once.
    batch_size: int = 1
    concurrency: int = 1

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the answers (weights identity, generation parameters).

        It goes into the content-addressed response keys: two SUTs with equal fingerprints share
        stored responses, and any change means fresh ones.
        """

    @abstractmethod
    async def respond(self, items: list[TestItem]) -> list[SUTResponse]:
        """One response per item, in the same order. Failures become `outcome="error"` rows."""

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def metadata(self) -> dict[str, Any]:
        """Descriptive facts for records and reports (not part of the key)."""
        return {"uid": self.uid}

    async def preflight(self, who: str) -> None:  # noqa: B027 - optional hook
        """One cheap check before a long run (a remote SUT: is the server there, does it serve the
        model, does it take the key?); raises UserError with one line naming `who`. Local models
        are checked when the run is prepared, so the default does nothing."""

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Stop work in flight soon (Ctrl-C); its results are discarded, never stored."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources (clients, models)."""
