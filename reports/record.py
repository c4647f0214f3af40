"""The run record: `runs/<run_id>/record.json`, everything needed to trust and reproduce a grade."""

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from modelbench.graders.scoring import SUTScore

# 2: scores carry `corrected` (Rogan-Gladen rate and interval) and `graded_on`; grades may be
# "insufficient data"; `errors` lists failures by reason; timing lists resume legs.
RECORD_VERSION = 2


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
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`errors`: failed responses and invalid verdicts grouped by reason (modelbench.failures),
    so the record says why, not only how many."""
    return {
        "record_version": RECORD_VERSION,
        "run_id": run_id,
        "versions": package_versions(),
        "config": config,
        "timing": timing,
        "counts": counts,
        "suts": suts,
        "errors": errors or [],
        "scores": [score.model_dump() for score in scores],
    }


def write_record(record: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "record.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str), "utf-8")
    tmp.replace(path)
    return path
