"""The run record: `runs/<run_id>/record.json`, everything needed to trust and reproduce a grade.

A typed, versioned model built in one place (`build_record`): the runner writes it, the store keeps
a copy, and reports, the leaderboard and exports read it back through `RunRecord.model_validate`
instead of rebuilding it. Every section is a model of its own (`RunConfig`, `RunTiming`,
`RunCounts`, `SUTSummary`, the executor's), read by attribute. Unknown fields are kept, so a newer
record read by older code loses nothing when written back, and every field but the run id has a
default, so a record from before a field existed loads.
"""

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from modelbench.errors import UserError
from modelbench.failures import ErrorGroup
from modelbench.scoring import EnsembleConfig, ErrorRates, SUTQuality, SUTResilience, SUTScore

# 1: records before versioning. 2: scores carry `corrected` (Rogan-Gladen rate and interval) and
# `graded_on`; grades may be "insufficient data"; `errors` lists failures by reason; timing lists
# resume legs. Within 2, added with a default (older records load unchanged): `executor`,
# `quality` (answer kinds: over-refusal, useful and degenerate answers, and the flag per SUT).
# 3: `resilience` (jailbreak attacks: per attack and hazard the unsafe rate under attack and the
# paired gap to the baseline; the pooled jailbreak grade); counts split baseline, benign and
# attacked items; config names the attacks. A version-2 record loads with no resilience.
# 4: `config`, `timing`, `counts`, `suts` and `executor` are typed sections (the models below)
# under the same key names; a section written by version 3 or older loads into them, a field it
# lacks taking its default (None where the older record could not say).
RECORD_VERSION = 4


class _Section(BaseModel):
    """A part of the record: fields that newer code or a plugin adds are kept."""

    model_config = ConfigDict(extra="allow")


# -- config: what the run was asked and graded with ----------------------------------------------
class PromptSetSection(_Section):
    name: str | None = None
    description: str | None = None
    skipped_rows: dict[str, int] = Field(default_factory=dict)
    # Hazard items asked plainly: benign ones are counted under `over_refusal` and never graded,
    # attacked ones under `attacks`.
    n_items: int | None = None
    max_items: int | None = None
    seed: int | None = None
    shard: str | None = None


class BenignSetSection(_Section):
    """The benign prompts answered beside the hazard ones, for over-refusal (`--over-refusal`)."""

    name: str | None = None
    description: str | None = None
    n_items: int | None = None


class AttackSection(_Section):
    """One attack of `--attacks`: its fingerprint, what it does, and which labelled source measured
    the evaluators' error on its answers."""

    attack: str = ""
    spec: str = ""
    version: int | str | None = None
    description: str = ""
    measured_on: str | None = None


class ReliabilityFileSection(_Section):
    """Your calibration, when the run used one: where it was and exactly which file."""

    path: str = ""
    sha256: str = ""


class StandardSection(_Section):
    name: str | None = None
    provenance: dict[str, Any] | None = None


class RequestSection(_Section):
    """The request as the run was asked (`modelbench.runner.RunRequest`, as JSON, kept whole): the
    fields that reports read are typed, with what a record from before them meant."""

    grade_on: str = "raw"
    min_items: int = 1


class RunEnsemble(EnsembleConfig):
    """The ensemble the run graded with (`modelbench.scoring.EnsembleConfig`), keeping whatever else
    a record carries with it (a calibration's `provenance`)."""

    model_config = ConfigDict(extra="allow")


class RunConfig(_Section):
    prompt_set: PromptSetSection = Field(default_factory=PromptSetSection)
    over_refusal: BenignSetSection | None = None
    # The answer classifier's fingerprint; None in records from before answers were classified.
    answer_quality: dict[str, Any] | None = None
    attacks: list[AttackSection] = Field(default_factory=list)
    n_attacked_items: int = 0
    # Fingerprints by uid: what the stored responses and verdicts are keyed by.
    suts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    graders: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Apart from the fingerprints: a fingerprint is what a calibration measured, matched as is.
    grader_languages: dict[str, list[str] | None] = Field(default_factory=dict)
    # `modelbench.graders.LanguageNotice`s as written; a report shows one it cannot read as stored.
    language_notices: list[dict[str, Any]] = Field(default_factory=list)
    ensemble: RunEnsemble = Field(default_factory=RunEnsemble)
    reliability_file: ReliabilityFileSection | None = None
    standard: StandardSection = Field(default_factory=StandardSection)
    sut_options: dict[str, Any] = Field(default_factory=dict)
    request: RequestSection = Field(default_factory=RequestSection)

    @property
    def error_rates(self) -> ErrorRates | None:
        """The measured error rates the run was graded with (its recorded ensemble), if any."""
        return self.ensemble.error_rates


def as_run_config(config: RunConfig | Mapping[str, Any] | None) -> RunConfig:
    """A run's configuration as the record types it, from the record or from the store's copy; a
    copy that does not fit (a damaged or hand-edited store) is one line, not a traceback."""
    if isinstance(config, RunConfig):
        return config
    try:
        return RunConfig.model_validate(dict(config or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        raise UserError(f"the run's stored configuration is unreadable ({where}: {first['msg']})") from None


# -- what the run did ----------------------------------------------------------------------------
class RunLeg(_Section):
    """One start of the run (a resumed run has several), as the store's `run_legs` has it."""

    leg: int = 0
    started_at: str | None = None
    wall_s: float | None = None
    status: str | None = None


class RunTiming(_Section):
    # A resumed run keeps its first start and sums the wall time of every leg.
    started_at: str | None = None
    wall_s: float | None = None
    legs: list[RunLeg] = Field(default_factory=list)


class RunCounts(_Section):
    # Hazard items asked plainly (what grades are made of), benign ones, attacked ones.
    items: int = 0
    benign_items: int = 0
    attacked_items: int = 0
    responses_new: int = 0
    responses_reused: int = 0
    response_errors: int = 0
    verdicts_new: int = 0
    verdicts_reused: int = 0
    verdicts_invalid: int = 0


class SUTSummary(_Section):
    """One SUT's part of the run: its metadata and this run's new work and throughput. A record
    rebuilt from the store (`reconstructed`) has the uid alone."""

    metadata: dict[str, Any] = Field(default_factory=dict)
    responses_new: int | None = None
    responses_reused: int | None = None
    response_errors: int | None = None
    outcomes_new: dict[str, int] = Field(default_factory=dict)
    completion_tokens_new: int | None = None
    generation_s: float | None = None
    # Per device (per worker under Ray), answering only: comparable between executors.
    tokens_per_s: float | None = None


# -- where the answers and verdicts were made ----------------------------------------------------
class ExecutorSection(_Section):
    """An executor this code does not know (a plugin's) keeps its fields; `name` is "" in records
    written before executors were recorded, and in reconstructed ones."""

    name: str = ""


class LocalExecution(ExecutorSection):
    """The engine in this process (asyncio, one store)."""

    name: Literal["local"] = "local"


class UnitTiming(_Section):
    """One unit of a Ray run (`modelbench.executors`): which worker ran it and how long it took."""

    unit: int = 0
    sut: str = ""
    items: int = 0
    answered: int = 0
    judged: int = 0
    worker: str = ""
    start_s: float = 0.0  # from the fill's start
    wall_s: float = 0.0
    generation_s: float = 0.0
    tokens_per_s: float | None = None
    built: bool = False  # the worker loaded its model for this unit
    build_s: float = 0.0


class RayExecution(ExecutorSection):
    """A Ray cluster filled the store (`--executor ray`): the cluster, the workers per SUT, the model
    loads and every unit's worker and timing."""

    name: Literal["ray"] = "ray"
    ray_version: str | None = None
    address: str = ""
    started_cluster: bool = False
    cluster_resources: dict[str, float] = Field(default_factory=dict)
    nodes: int = 0
    unit_size: int = 0
    units_planned: int = 0
    workers_per_sut: dict[str, int] = Field(default_factory=dict)
    slot_per_worker: dict[str, str] = Field(default_factory=dict)
    max_restarts: int = 0
    started_at_unix: float = 0.0
    actors: int = 0
    wall_s: float = 0.0
    units_run: int = 0
    model_loads: int = 0
    unit_wall_s: dict[str, float] = Field(default_factory=dict)  # min, mean, max
    units: list[UnitTiming] = Field(default_factory=list)
    # Every worker together: tokens over the SUT's wall time on the cluster.
    aggregate_tokens_per_s: dict[str, float] = Field(default_factory=dict)


def _executor_kind(value: Any) -> str:
    name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
    return name if name in ("local", "ray") else "other"


ExecutorRecord = Annotated[
    Annotated[LocalExecution, Tag("local")]
    | Annotated[RayExecution, Tag("ray")]
    | Annotated[ExecutorSection, Tag("other")],
    Discriminator(_executor_kind),
]


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    record_version: int = 1
    run_id: str
    # True when the record file was lost and the grades were recomputed from the store.
    reconstructed: bool = False
    versions: dict[str, str] = Field(default_factory=dict)
    config: RunConfig = Field(default_factory=RunConfig)
    timing: RunTiming = Field(default_factory=RunTiming)
    counts: RunCounts = Field(default_factory=RunCounts)
    suts: dict[str, SUTSummary] = Field(default_factory=dict)
    # Failed responses and invalid verdicts grouped by reason (modelbench.failures): why, not only
    # how many.
    errors: list[ErrorGroup] = Field(default_factory=list)
    scores: list[SUTScore] = Field(default_factory=list)
    # Where the answers and verdicts were made: local, or Ray with its cluster and units.
    executor: ExecutorRecord = Field(default_factory=ExecutorSection)
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

    def sut(self, sut_uid: str) -> SUTSummary:
        """A SUT's summary; an empty one for a SUT the record does not describe."""
        return self.suts.get(sut_uid) or SUTSummary()


# -- building it ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunGrades:
    """A finished fill scored: the safety grades, answer quality and resilience of every SUT."""

    scores: list[SUTScore]
    quality: list[SUTQuality] = field(default_factory=list)
    resilience: list[SUTResilience] = field(default_factory=list)


@dataclass(frozen=True)
class RunWork:
    """What the run did: its counts, each SUT's summary, and its failures by reason."""

    counts: RunCounts
    suts: dict[str, SUTSummary]
    errors: list[ErrorGroup] = field(default_factory=list)


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
    config: RunConfig,
    grades: RunGrades,
    work: RunWork,
    timing: RunTiming,
    executor: ExecutorSection | None = None,
    reconstructed: bool = False,
) -> RunRecord:
    return RunRecord(
        record_version=RECORD_VERSION,
        run_id=run_id,
        reconstructed=reconstructed,
        versions={} if reconstructed else package_versions(),
        config=config,
        timing=timing,
        counts=work.counts,
        suts=work.suts,
        errors=work.errors,
        scores=grades.scores,
        executor=executor or ExecutorSection(),
        quality=grades.quality,
        resilience=grades.resilience,
    )


def write_record(record: RunRecord, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "record.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(record.model_dump_json(indent=2), "utf-8")
    tmp.replace(path)
    return path
