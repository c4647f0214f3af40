"""The SUT protocol: what the engine needs from any system under test.

Every adapter answers in ModelGauge's three steps, and the base class runs them (`respond` is
final: a subclass that overrides it fails when the class is created):

1. `build_request(items)`: the adapter's native request for a batch. Pure: no network, no device.
2. `await call(request)`: the native answer. The only step that touches a network or an
   accelerator; retries, concurrency limits and worker threads belong here.
3. `parse_response(items, native)`: one `SUTResponse` per item, in item order. Pure.

So the first and last steps are tested as plain functions, without a server or a model.
"""

from abc import ABC, abstractmethod
from typing import Any, Generic, Literal, TypeVar, final

from modelbench.core import GRADABLE_OUTCOMES, Outcome, SUTResponse, TestItem  # noqa: F401 (re-exported)

# What a SUT can do beyond answering, declared by the adapter so that callers ask (`sut.can(...)`)
# instead of testing its class:
# - "batching": `respond` takes many items per call (a local model's length-sorted batches);
# - "choice_scores": `choice_logprobs`, the log-probability of each given continuation;
# - "first_token_scores": `first_token_logprobs`, the same read from the first token alone (one
#   forward pass for all choices);
# - "accelerator": it computes on this machine and wants its GPU (a local model; an executor that
#   places work gives it a device slot, while an API SUT only waits on the network).
Capability = Literal["batching", "choice_scores", "first_token_scores", "accelerator"]

RequestT = TypeVar("RequestT")
NativeT = TypeVar("NativeT")


class SUT(ABC, Generic[RequestT, NativeT]):
    """A system under test. Constructing one is cheap; heavy loading waits for the first call.

    Subclasses implement the three steps (module docstring) and `fingerprint`; `respond` is the
    base class's, and overriding it raises TypeError.
    """

    uid: str
    capabilities: frozenset[Capability] = frozenset()
    # How many items the engine hands to `respond` at once, and how many such calls it keeps in
    # flight: a local model wants big batches one at a time, an API many single items at once.
    batch_size: int = 1
    concurrency: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "respond" in cls.__dict__:
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} overrides SUT.respond; a SUT implements "
                "build_request (pure), call (the only step that touches a network or device) and "
                "parse_response (pure), and the base class's respond runs them"
            )

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes the answers (weights identity, generation parameters).

        It goes into the content-addressed response keys: two SUTs with equal fingerprints share
        stored responses, and any change means fresh ones.
        """

    # -- the three steps -----------------------------------------------------------------------
    @abstractmethod
    def build_request(self, items: list[TestItem]) -> RequestT:
        """Step 1: the native request for these items. Pure: no network, no device."""

    @abstractmethod
    async def call(self, request: RequestT) -> NativeT:
        """Step 2: send the request, return the native answer. The only step that touches a
        network or an accelerator. Per-item failures (an HTTP error after retries) belong in the
        native answer; an exception fails the whole batch (the engine records it per item)."""

    @abstractmethod
    def parse_response(self, items: list[TestItem], native: NativeT) -> list[SUTResponse]:
        """Step 3: one response per item, in item order; failures as `outcome="error"` rows.
        Pure."""

    @final
    async def respond(self, items: list[TestItem]) -> list[SUTResponse]:
        """One response per item, in the same order: the three steps, in order."""
        request = self.build_request(items)
        native = await self.call(request)
        return self.parse_response(items, native)

    # -- capabilities --------------------------------------------------------------------------
    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def choice_logprobs(self, texts: list[str], prefix: str, choices: list[str]) -> list[list[float]]:
        """Capability "choice_scores": log p of each choice as the start of the answer to each
        text (after `prefix`), one row per text. Blocking; callers run it in a thread."""
        raise NotImplementedError(f"SUT {self.uid} cannot score choices (it does not declare choice_scores)")

    def first_token_logprobs(
        self, texts: list[str], prefix: str, choices: list[str]
    ) -> list[list[float]] | None:
        """Capability "first_token_scores": log p of each choice's first token after `prefix`.
        None when the first tokens do not tell the choices apart, or the SUT cannot say (it does
        not declare the capability): the caller then scores whole choices."""
        return None

    # -- optional hooks ------------------------------------------------------------------------
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
