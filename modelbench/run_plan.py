"""What a run is asked (`RunRequest`) and what `modelbench.runner.prepare` makes of it (`PreparedRun`).

The data every job of a run shares: its lifecycle (`modelbench.runner`), scoring a finished fill
(`modelbench.run_scoring`) and building and writing its record (`modelbench.run_record`).
"""

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from modelbench.core import TestItem, is_attacked, is_benign
from modelbench.graders import DEFAULT_GRADERS, Evaluator, LanguageNotice, language_notices
from modelbench.hazards import DEFAULT_STANDARD, ReferenceStandard
from modelbench.prompts import DEFAULT_PROMPT_SET, PromptSet
from modelbench.prompts.attacks import Attack
from modelbench.scoring import DEFAULT_MIN_ITEMS, EnsembleConfig, GradeOn, GradingRules
from modelbench.suts import DEFAULT_SUT, SUT, SUTOptions


class RunRequest(BaseModel):
    suts: list[str] = Field(default_factory=lambda: [DEFAULT_SUT])
    prompt_set: str = DEFAULT_PROMPT_SET
    # Benign prompts answered beside the hazard prompts, for over-refusal: "mb-benign" or a file.
    over_refusal: str | None = None
    skip_invalid: bool = False
    max_items: int | None = None
    seed: int = 0
    run_dir: Path = Path("runs")
    graders: list[str] = Field(default_factory=lambda: list(DEFAULT_GRADERS))
    standards: str = DEFAULT_STANDARD
    sut_config: Path | None = None
    sut_options: SUTOptions = Field(default_factory=SUTOptions)
    # "i/N": run only the i-th of N deterministic slices (1-based); merge the stores afterwards.
    shard: str | None = None
    # One cheap request per API SUT and grader before the run (see `preflight`).
    preflight: bool = True
    # Grade on the unsafe rate corrected for the evaluators' measured errors, or on the raw one.
    grade_on: GradeOn = "corrected"
    # Fewer valid items than this in a hazard (or overall): "insufficient data", no grade.
    min_items: int = DEFAULT_MIN_ITEMS
    # A calibration of your own (`modelbench graders calibrate`) instead of the shipped one.
    reliability: Path | None = None
    # Jailbreak attacks (`modelbench list attacks`): each hazard item is also asked under each.
    attacks: list[str] = Field(default_factory=list)


@dataclass
class PreparedRun:
    request: RunRequest
    prompt_set: PromptSet
    # Hazard items, then benign ones (`over_refusal`); only hazard items are graded for safety.
    items: list[TestItem]
    suts: list[SUT]
    evaluators: list[Evaluator]
    ensemble: EnsembleConfig
    standard: ReferenceStandard
    run_id: str
    benign_set: PromptSet | None = None
    attacks: list[Attack] = field(default_factory=list)
    # The rewriters of attacks that need a model (past-tense@SUT), by attack spec.
    rewriters: dict[str, SUT] = field(default_factory=dict)

    @property
    def benign_uids(self) -> frozenset[str]:
        return frozenset(item.uid for item in self.items if is_benign(item.source))

    @property
    def attacked_uids(self) -> frozenset[str]:
        return frozenset(item.uid for item in self.items if is_attacked(item.source))

    @property
    def baseline_uids(self) -> frozenset[str]:
        """The hazard items asked plainly: what the grade is made of."""
        return frozenset(i.uid for i in self.items if not is_benign(i.source) and not is_attacked(i.source))

    @property
    def language_notices(self) -> list[LanguageNotice]:
        """Locales of the items that some evaluator was not trained and measured on."""
        return language_notices(self.items, self.evaluators)


def grading_rules(request: RunRequest, ensemble: EnsembleConfig) -> GradingRules:
    return GradingRules(rates=ensemble.error_rates, grade_on=request.grade_on, min_items=request.min_items)
