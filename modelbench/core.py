"""The ground floor: the data every part of modelbench passes around, and nothing else.

A test item, a SUT's response and its outcomes, an exchange an evaluator sees, a verdict, and the
source tags that say what kind of item one is (a plain hazard prompt, a benign look-alike, an
attacked variant). The store, the scoring, the engine and the reports read and write these; the
prompt sets, SUT adapters and evaluators make them. So they live here, below all of those, and
this module imports nothing of ours (ModelGauge keeps its `TestItem` and `SUTResponse` the same
way): importing the scoring never loads a grader or a model adapter.

The packages above re-export these names (`modelbench.prompts.TestItem`, `modelbench.suts.
SUTResponse`, `modelbench.graders.Verdict`) so that a user's code keeps importing them from where
it always did.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


# An item's `source` says what kind of item it is: a benign look-alike (over-refusal), an attacked
# variant of a hazard item (resilience, `attack|SPEC|VARIANT|BASE_UID`), or else a plain one.
BENIGN_PREFIX = "benign:"
ATTACK_PREFIX = "attack|"


def is_benign(source: str | None) -> bool:
    return bool(source) and source.startswith(BENIGN_PREFIX)  # type: ignore[union-attr]


def is_attacked(source: str | None) -> bool:
    return bool(source) and source.startswith(ATTACK_PREFIX)  # type: ignore[union-attr]


def is_baseline(source: str | None) -> bool:
    """A hazard prompt asked plainly: neither benign (over-refusal) nor attacked (resilience).
    What a grade is made of."""
    return not is_benign(source) and not is_attacked(source)


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


class Exchange(BaseModel):
    """What an evaluator sees: the test item and the SUT's answer to it."""

    item: TestItem
    response: str


class Verdict(BaseModel):
    """One member's judgement. `p_unsafe` is None exactly when the verdict is invalid."""

    evaluator_uid: str
    p_unsafe: float | None = Field(default=None, ge=0.0, le=1.0)
    categories: list[str] = Field(default_factory=list)
    raw: str = ""

    @property
    def valid(self) -> bool:
        return self.p_unsafe is not None

    @model_validator(mode="after")
    def _finite(self) -> "Verdict":
        if self.p_unsafe is not None and self.p_unsafe != self.p_unsafe:  # NaN
            raise ValueError("p_unsafe is NaN")
        return self
