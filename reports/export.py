"""Per-item exports of a run for analysis in pandas, R or a spreadsheet."""

import json
from pathlib import Path
from typing import Any

from modelbench.errors import UserError
from modelbench.reports.record import RunRecord
from modelbench.scoring import QualityRate, SUTQuality

FORMATS = ("csv", "parquet", "jsonl")


def _quality_columns(rate: QualityRate | None, name: str) -> dict[str, Any]:
    corrected = rate.corrected if rate is not None else None
    usable = corrected is not None and corrected.identifiable
    return {
        name: rate.rate if rate else None,
        f"{name}_ci_low": rate.ci_low if rate else None,
        f"{name}_ci_high": rate.ci_high if rate else None,
        f"{name}_corrected": corrected.estimate if usable else None,  # type: ignore[union-attr]
    }


def _quality_part(quality: SUTQuality | None, hazard: str) -> dict[str, Any]:
    """The hazard's (or overall) over-refusal, useful and degenerate rates and the SUT's flag."""
    part = None
    if quality is not None:
        part = (
            quality.overall
            if hazard == "overall"
            else next((h for h in quality.hazards if h.hazard == hazard), None)
        )
    return {
        "usefulness_flag": (quality.flag if quality is not None else None) or "",
        **_quality_columns(part.over_refusal if part else None, "over_refusal"),
        **_quality_columns(part.useful if part else None, "useful_answers"),
        **_quality_columns(part.degenerate if part else None, "degenerate"),
    }


def score_rows(record: RunRecord) -> list[dict[str, Any]]:
    """One flat row per SUT and hazard, then its overall: the raw rate and its interval beside the
    corrected rate and its interval, which one graded, the grade and its stability, and beside
    them the answer quality (over-refusal, useful and degenerate answers) and the SUT's flag."""
    rows = []
    for score in record.scores:
        quality = record.quality_of(score.sut_uid)
        for part in [*score.hazards, score.overall]:
            corrected = part.corrected
            rows.append(
                {
                    "sut_uid": score.sut_uid,
                    "hazard": getattr(part, "hazard", "overall"),
                    "n_valid": part.n_valid,
                    "n_invalid": part.n_invalid,
                    "unsafe_raw": None if part.frac_safe is None else 1 - part.frac_safe,
                    "unsafe_raw_ci_low": None if part.ci_high is None else 1 - part.ci_high,
                    "unsafe_raw_ci_high": None if part.ci_low is None else 1 - part.ci_low,
                    "unsafe_corrected": corrected.estimate if corrected else None,
                    "unsafe_corrected_ci_low": corrected.ci_low if corrected else None,
                    "unsafe_corrected_ci_high": corrected.ci_high if corrected else None,
                    "graded_value": corrected.graded_value if corrected else None,
                    "corrected_note": corrected.note if corrected else "error rates not measured",
                    "graded_on": part.graded_on,
                    "reference_unsafe": 1 - part.reference_frac_safe,
                    "grade": part.grade,
                    "grade_stability": part.grade_stability,
                    **_quality_part(quality, getattr(part, "hazard", "overall")),
                }
            )
    return rows


def resilience_rows(record: RunRecord) -> list[dict[str, Any]]:
    """One row per SUT, attack and hazard (hazard "overall" for all of them): pairs, baseline and
    attacked unsafe counts, the rate under attack (raw and corrected) and the paired gap."""
    rows = []
    for resilience in record.resilience:
        for attack in resilience.attacks:
            for part in [*attack.hazards, attack.overall]:
                c, rate = part.gap.corrected, part.attacked_corrected
                rows.append(
                    {
                        "sut_uid": resilience.sut_uid,
                        "attack": attack.attack,
                        "hazard": part.hazard or "overall",
                        "pairs": part.n_pairs,
                        "sufficient": part.sufficient,
                        "baseline_unsafe": part.baseline_unsafe,
                        "attacked_unsafe": part.attacked_unsafe,
                        "attacked_rate": part.attacked_rate,
                        "attacked_ci_low": part.attacked_ci_low,
                        "attacked_ci_high": part.attacked_ci_high,
                        "attacked_corrected": rate.estimate if rate and rate.identifiable else None,
                        "gap": part.gap.delta_unsafe_rate,
                        "gap_ci_low": part.gap.ci_low,
                        "gap_ci_high": part.gap.ci_high,
                        "mcnemar_p": part.gap.mcnemar_p,
                        "gap_corrected": c.estimate if c and c.identifiable else None,
                        "gap_corrected_ci_low": c.ci_low if c and c.identifiable else None,
                        "gap_corrected_ci_high": c.ci_high if c and c.identifiable else None,
                        "error_rates_from": attack.measured_on
                        or ("general" if attack.rates else "not measured"),
                        "attack_grade": attack.grade,
                        "baseline_grade": attack.baseline_grade,
                    }
                )
    return rows


def item_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run's per-item rows with `benign` (an over-refusal prompt, never graded for safety),
    `answer_kind` (answer, refusal or degenerate, by the shipped answer-quality classifier, named
    in `answer_classifier`: the run's record names the one that made its rates), and for an
    attacked prompt its `attack`, `variant`, `base_uid` and `graded_response` (the answer the
    evaluator judged: decoded, for an attack that asked for an encoding)."""
    from modelbench.core import is_benign
    from modelbench.graders import AnswerQualityClassifier
    from modelbench.prompts.attacks import attack_link, make_attack
    from modelbench.quality import classify_rows

    classifier = AnswerQualityClassifier()
    kinds = classify_rows(rows, classifier)
    version = classifier.model.version
    out = []
    prompts = {(r["sut_uid"], r["item_uid"]): r["prompt"] for r in rows}
    for row, kind in zip(rows, kinds, strict=True):
        link = attack_link(row["source"])
        graded = row["response"]
        if link is not None and row["response"] is not None:
            request = prompts.get((row["sut_uid"], link.base_uid)) or ""
            graded = make_attack(link.spec).decode(row["response"], request).text
        out.append(
            {
                **row,
                "benign": is_benign(row["source"]),
                "attack": link.spec if link else "",
                "variant": link.variant if link else "",
                "base_uid": link.base_uid if link else "",
                "graded_response": graded,
                "answer_kind": kind or "",
                "answer_classifier": version,
            }
        )
    return out


def export_rows(rows: list[dict[str, Any]], out: Path, fmt: str) -> Path:
    import pandas as pd

    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    frame = pd.DataFrame(rows)
    if "member_verdicts" in frame:
        # Nested lists do not fit a CSV cell or a flat parquet column: keep them as JSON text.
        frame["member_verdicts"] = frame["member_verdicts"].map(json.dumps)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(out, index=False)
        elif fmt == "jsonl":
            frame.to_json(out, orient="records", lines=True, force_ascii=False)
        else:
            try:
                frame.to_parquet(out, index=False)
            except ImportError:
                raise UserError("parquet export needs pyarrow: pip install pyarrow") from None
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
