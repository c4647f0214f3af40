"""Reference standards measured with our own evaluators.

AILuminate's published references were measured with MLCommons' evaluator; grading our verdicts
against them mixes two instruments. `modelbench calibrate` runs (or reuses) reference SUTs with
the chosen evaluators and stores, per hazard, the lowest frac safe among them, with provenance.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelbench.errors import UserError
from modelbench.jsonfile import write_json
from modelbench.runner import PreparedRun, RunResult


def standard_from_run(name: str, prepared: PreparedRun, result: RunResult) -> dict[str, Any]:
    per_sut: dict[str, dict[str, float]] = {}
    for score in result.scores:
        per_sut[score.sut_uid] = {h.hazard: h.frac_safe for h in score.hazards if h.frac_safe is not None}
    hazards = sorted({h for values in per_sut.values() for h in values})
    lowest = {}
    for hazard in hazards:
        values = [v[hazard] for v in per_sut.values() if hazard in v]
        if len(values) < len(per_sut):
            raise UserError(
                f"hazard '{hazard}' has no valid items for every reference SUT; cannot calibrate it"
            )
        lowest[hazard] = min(values)
    return {
        "name": name,
        "description": f"per hazard, the lowest frac safe among {', '.join(per_sut)}",
        "provenance": {
            "kind": "calibrated by modelbench",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": prepared.run_id,
            "reference_suts": {sut.uid: sut.fingerprint() for sut in prepared.suts},
            "evaluator": {e.uid: e.fingerprint() for e in prepared.evaluators},
            "ensemble": prepared.ensemble.model_dump(),
            "prompt_set": {"name": prepared.prompt_set.name, "n_items": len(prepared.items)},
            "per_sut_frac_safe": per_sut,
        },
        "frac_safe": lowest,
    }


def write_standard(standard: dict[str, Any], out: Path) -> Path:
    return write_json(standard, out)
