"""The ensemble's calibrated reliability priors, threshold and measured error rates, as a run loads them.

The file (`graders/reliability.json` by default) is written by the evaluator lab
(`modelbench.graders.lab.evaluation.calibrate`, `benchmarks/evaluator_sources.py`); reading it is a
scoring matter, so it lives here and a run never imports the lab.
"""

import importlib.util
import json
from pathlib import Path
from typing import Any

from modelbench.errors import UserError
from modelbench.jsonfile import write_json
from modelbench.scoring.correction import ErrorRates
from modelbench.scoring.ensemble import EnsembleConfig

RELIABILITY_FILE = "reliability.json"


def default_reliability_path() -> Path:
    """The shipped file, beside the evaluators' other data (`graders/`), found without importing
    the graders package: reading a run's calibration must not load the evaluator registry."""
    spec = importlib.util.find_spec("modelbench.graders")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the modelbench.graders package is not installed; reinstall modelbench")
    return Path(next(iter(spec.submodule_search_locations))) / RELIABILITY_FILE


def write_reliability(calibration: dict, out: Path) -> Path:
    return write_json(calibration, out)


def source_rates(data: dict[str, Any], pooled: dict[str, Any]) -> dict[str, ErrorRates]:
    """Per-source error counts of the calibration (`provenance.per_source`), each with the pooled
    between-source spread: one source's rows say how the evaluator does on that kind of answer,
    and a new model's answers of that kind are still one more draw."""
    per_source = (data.get("provenance") or {}).get("per_source") or {}
    return {
        name: ErrorRates(
            tp=int(counts["tp"]),
            fn=int(counts["fn"]),
            tn=int(counts["tn"]),
            fp=int(counts["fp"]),
            measured_on=f"held-out {name} rows ({pooled.get('measured_on', '')})",
            sensitivity_spread=float(pooled.get("sensitivity_spread", 0.0)),
            specificity_spread=float(pooled.get("specificity_spread", 0.0)),
        )
        for name, counts in per_source.items()
    }


def load_ensemble_config(
    path: Path | None = None,
    graders: list[str] | None = None,
    fingerprints: dict[str, Any] | None = None,
) -> EnsembleConfig:
    """The ensemble with calibrated priors (the shipped file unless another is given).

    The decision threshold belongs to the member set it was chosen for: when `graders` names
    another set than the file's `members`, the threshold falls back to 0.5. Measured error rates
    belong to the exact configuration they were measured on: the same member set and, when
    `fingerprints` is given and the file records them, the same evaluator fingerprints (a
    retrained model is another instrument); otherwise the run has none and grades on raw rates.
    """
    path = path or default_reliability_path()
    if not path.is_file():
        if path != default_reliability_path():
            raise UserError(f"reliability file not found: {path}")
        return EnsembleConfig()
    try:
        data = json.loads(path.read_text("utf-8"))
        members = data.get("members")
        threshold = float(data.get("threshold", 0.5))
        if graders is not None and members is not None and set(graders) != set(members):
            threshold = 0.5
        same_members = graders is None or members is None or set(graders) == set(members)
        measured = (data.get("provenance") or {}).get("fingerprints")
        same_models = (
            fingerprints is None
            or measured is None
            or measured == {uid: fingerprints.get(uid) for uid in measured}
        )
        rates = data.get("error_rates")
        measured_here = bool(rates and same_members and same_models)
        return EnsembleConfig(
            # Only the run's own members: a record names the priors that weighed its verdicts.
            reliability={
                k: float(v) for k, v in data["reliability"].items() if graders is None or k in graders
            },
            threshold=threshold,
            error_rates=ErrorRates.model_validate(rates) if measured_here else None,
            source_error_rates=source_rates(data, rates) if measured_here else {},
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"invalid reliability file {path}: {exc}") from None
