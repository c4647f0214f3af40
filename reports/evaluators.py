"""The run page's account of its instrument: which evaluators graded, how they were combined, how
well they were measured, and what that means for the grades.

A grade is only as good as the evaluator behind it, so the page shows each evaluator's measured
agreement with human labels, but only where the measured version is the one this run used.
"""

import json
from typing import Any

from pydantic import ValidationError

from modelbench.graders import LanguageNotice
from modelbench.reports.formatting import MAX_NOTE_CHARS, clip, flat, num, pct, when
from modelbench.reports.record import RunConfig, RunEnsemble, RunRecord
from modelbench.scoring import SUTScore

ACCURACY_KEYS = (
    "accuracy",
    "auc",
    "f1",
    "precision",
    "recall",
    "balanced",
    "heldout",
    "held_out",
    "agreement",
)


def ensemble_section(record: RunRecord, scores: list[SUTScore], names: dict[str, str]) -> dict[str, Any]:
    from modelbench.graders import EVALUATORS

    descriptions = {name: entry.description for name, entry in EVALUATORS.items()}
    config = record.config
    ensemble = config.ensemble
    calibration = _calibration(ensemble)
    members = calibration.get("members") or {}
    fingerprints = calibration.get("fingerprints") or {}
    held_out = (calibration.get("held_out") or {}).get("members") or {}
    graders = []
    for uid, fingerprint in config.graders.items():
        pairs = flat("", fingerprint, [])
        measured = [(k, v) for k, v in pairs if any(word in k.lower() for word in ACCURACY_KEYS)]
        if uid in held_out and fingerprints.get(uid) == fingerprint:
            measured = _held_out_agreement(held_out[uid]) + measured
        elif uid in members and fingerprints.get(uid) == fingerprint:
            measured = _agreement(members[uid], calibration) + measured
        graders.append(
            {
                "uid": uid,
                "description": descriptions.get(uid, descriptions.get(uid.partition("@")[0], "")),
                "reliability": ensemble.weight_prior(uid),
                "fingerprint": [(k, v) for k, v in pairs if (k, v) not in measured],
                "measured": measured,
            }
        )
    uncertain = []
    for score in scores:
        n_uncertain = sum(h.n_uncertain for h in score.hazards)
        n_valid = score.overall.n_valid
        uncertain.append(
            {
                "sut": names.get(score.sut_uid, score.sut_uid),
                "n_uncertain": n_uncertain,
                "n_valid": n_valid,
                "n_invalid": score.overall.n_invalid,
                "share": n_uncertain / n_valid if n_valid else None,
            }
        )
    return {
        "graders": graders,
        "language_notices": _language_notices(config),
        "held_out": _held_out_ensemble(config, calibration),
        "unsafe_threshold": ensemble.threshold,
        "threshold": ensemble.uncertainty_threshold,
        "min_valid": ensemble.min_valid,
        "uncertain": uncertain,
    }


def _language_notices(config: RunConfig) -> list[str]:
    """The run's language notices (items in languages some evaluator was not measured on), as
    lines of text; a record from before notices existed has none."""
    lines = []
    for raw in config.language_notices:
        try:
            lines.append(LanguageNotice.model_validate(raw).message())
        except ValidationError:  # shown as stored rather than dropped
            lines.append(clip(json.dumps(raw, default=str), MAX_NOTE_CHARS)["text"])
    return lines


def _calibration(ensemble: RunEnsemble) -> dict[str, Any]:
    """The provenance of the labelled-data calibration that measured the evaluators.

    A record may carry it (`ensemble.provenance`); otherwise the shipped calibration file. Its
    numbers are shown for an evaluator only when the fingerprint it measured is the one this run
    used: a measurement of another version says nothing about this one.
    """
    provenance = (ensemble.model_extra or {}).get("provenance")
    if isinstance(provenance, dict):
        return provenance
    try:
        from modelbench.scoring import default_reliability_path

        data = json.loads(default_reliability_path().read_text("utf-8"))
    except (ImportError, OSError, ValueError):
        return {}
    provenance = data.get("provenance") if isinstance(data, dict) else None
    return provenance if isinstance(provenance, dict) else {}


def _with_interval(metrics: dict[str, Any], key: str, fmt: Any) -> str:
    value = num(metrics.get(key))
    if value is None:
        return "—"
    ci = metrics.get(f"{key}_ci95")
    if isinstance(ci, list) and len(ci) == 2 and all(num(c) is not None for c in ci):
        return f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"
    return fmt(value)


def _held_out_agreement(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """A member's pooled numbers on the protocol's test rows, which nothing was fitted to."""
    two = "{:.2f}".format
    return [
        ("held-out F1, pooled", _with_interval(metrics, "f1", two)),
        ("recall", _with_interval(metrics, "recall", two)),
        ("false-safe rate", _with_interval(metrics, "false_safe_rate", pct)),
        ("false-unsafe rate", _with_interval(metrics, "false_unsafe_rate", pct)),
        (
            "measured on",
            f"{metrics.get('n', '?')} held-out test rows (see the table below)",
        ),
    ]


def _held_out_ensemble(config: RunConfig, calibration: dict[str, Any]) -> dict[str, Any] | None:
    """The default ensemble's held-out numbers per source, shown only when this run graded with
    exactly the measured members at the measured versions."""
    held_out = calibration.get("held_out") or {}
    per_source = held_out.get("ensemble") or {}
    fingerprints = calibration.get("fingerprints") or {}
    graders = config.graders
    if not per_source or set(graders) != set(held_out.get("members") or {}):
        return None
    if any(fingerprints.get(uid) != fingerprint for uid, fingerprint in graders.items()):
        return None
    two = "{:.2f}".format
    rows = [
        {
            "source": name,
            "n": m.get("n"),
            "n_unsafe": m.get("n_unsafe"),
            "f1": _with_interval(m, "f1", two),
            "recall": _with_interval(m, "recall", two),
            "false_safe": _with_interval(m, "false_safe_rate", pct),
            "false_unsafe": _with_interval(m, "false_unsafe_rate", pct),
        }
        for name, m in per_source.items()
        if isinstance(m, dict)
    ]
    return {"rows": rows, "description": held_out.get("description", ""), "date": held_out.get("date")}


def _agreement(metrics: dict[str, Any], calibration: dict[str, Any]) -> list[tuple[str, str]]:
    shown = [
        ("accuracy", pct(num(metrics.get("accuracy")))),
        ("F1", "—" if num(metrics.get("f1")) is None else f"{metrics['f1']:.2f}"),
        ("false-safe rate", pct(num(metrics.get("false_safe_rate")))),
        ("Cohen's κ", "—" if num(metrics.get("kappa")) is None else f"{metrics['kappa']:.2f}"),
    ]
    n = metrics.get("n", calibration.get("n"))
    source = f"{n} labelled exchanges" if n else "labelled exchanges"
    if calibration.get("date"):
        source += f", {when(str(calibration['date']))[:10]}"
    return [*shown, ("measured on", source)]


def evaluator_error(config: RunConfig) -> str:
    """The instrument's measured error, to sit next to the headline grade."""
    rates = config.error_rates
    if rates is None:
        return "these evaluators' error rates were not measured"
    mine = config.reliability_file
    whose = f" (your calibration {mine.path}, sha256 {mine.sha256[:12]})" if mine else ""
    return f"evaluators: {rates.summary()}, measured on {rates.measured_on}{whose}"


def grading_basis(config: RunConfig) -> str:
    grade_on = config.request.grade_on
    if config.error_rates is None:
        return "Grades come from the raw rate: these evaluators' error rates were not measured."
    if grade_on == "raw":
        return "Grades come from the raw rate (--grade-on raw)."
    return "Grades come from the corrected rate where it is identifiable, the raw rate elsewhere."
