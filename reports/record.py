"""The run record: `runs/<run_id>/record.json`, everything needed to trust and reproduce a grade.

A typed, versioned model built in one place (`build_record`): the runner writes it, the store keeps
a copy, and reports, the leaderboard and exports read it back through `RunRecord.model_validate`
instead of rebuilding it. Unknown fields are kept, so a newer record read by older code loses
nothing when written back.
"""

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelbench.failures import ErrorGroup
from modelbench.scoring import ErrorRates, SUTQuality, SUTResilience, SUTScore

# 1: records before versioning. 2: scores carry `corrected` (Rogan-Gladen rate and interval) and
# `graded_on`; grades may be "insufficient data"; `errors` lists failures by reason; timing lists
# resume legs. Within 2, added with a default (older records load unchanged): `executor`,
# `quality` (answer kinds: over-refusal, useful and degenerate answers, and the flag per SUT).
# 3: `resilience` (jailbreak attacks: per attack and hazard the unsafe rate under attack and the
# paired gap to the baseline; the pooled jailbreak grade); counts split baseline, benign and
# attacked items; config names the attacks. A version-2 record loads with no resilience.
RECORD_VERSION = 3


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    record_version: int = 1
    run_id: str
    # True when the record file was lost and the grades were recomputed from the store.
    reconstructed: bool = False
    versions: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    timing: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, Any] = Field(default_factory=dict)
    suts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Failed responses and invalid verdicts grouped by reason (modelbench.failures): why, not only
    # how many.
    errors: list[ErrorGroup] = Field(default_factory=list)
    scores: list[SUTScore] = Field(default_factory=list)
    # Where the answers and verdicts were made: {"name": "local"}, or "ray" with the cluster's
    # resources, workers per SUT, model loads and every unit's worker and timing. Empty in records
    # written before executors were recorded.
    executor: dict[str, Any] = Field(default_factory=dict)
    # Per SUT: over-refusal and useful answers on benign prompts, degenerate answers on hazard
    # prompts, and "safe by incapacity" / "safe by refusal" (modelbench.scoring.usefulness).
    # Empty in records written before answers were classified.
    quality: list[SUTQuality] = Field(default_factory=list)
    # Per SUT, under each attack of `config.attacks` (modelbench.scoring.resilience). Empty when the
    # run had no attacks, and in records before version 3.
    resilience: list[SUTResilience] = Field(default_factory=list)

    def resilience_of(self, sut_uid: str) -> SUTResilience | None:
        return next((r for r in self.resilience if r.sut_uid == sut_uid), None)

    def quality_of(self, sut_uid: str) -> SUTQuality | None:
        return next((q for q in self.quality if q.sut_uid == sut_uid), None)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("modelbench", "torch", "transformers", "gguf", "pydantic", "scipy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_record(
    run_id: str,
    config: dict[str, Any],
    scores: list[SUTScore],
    counts: dict[str, Any],
    timing: dict[str, Any],
    suts: dict[str, dict[str, Any]],
    errors: list[ErrorGroup] | None = None,
    reconstructed: bool = False,
    executor: dict[str, Any] | None = None,
    quality: list[SUTQuality] | None = None,
    resilience: list[SUTResilience] | None = None,
) -> RunRecord:
    return RunRecord(
        record_version=RECORD_VERSION,
        run_id=run_id,
        reconstructed=reconstructed,
        versions={} if reconstructed else package_versions(),
        config=config,
        timing=timing,
        counts=counts,
        suts=suts,
        errors=errors or [],
        scores=scores,
        executor=executor or {},
        quality=quality or [],
        resilience=resilience or [],
    )


def run_error_rates(config: dict[str, Any]) -> ErrorRates | None:
    """The measured error rates a run was graded with (its recorded ensemble), if any."""
    rates = (config.get("ensemble") or {}).get("error_rates")
    try:
        return ErrorRates.model_validate(rates) if rates else None
    except ValueError:
        return None


def write_record(record: RunRecord, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "record.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(record.model_dump_json(indent=2), "utf-8")
    tmp.replace(path)
    return path
