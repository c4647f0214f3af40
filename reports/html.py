"""Self-contained HTML pages: one run's report, and a leaderboard of every SUT graded in a store.

People would rather look than read, and a grade is only trusted when its reader can see how it was
reached, so each page is one file (inline CSS and SVG) that opens offline, mails as an attachment
and prints.

Model output is untrusted input to these pages. Every value goes through Jinja2 autoescape, text
is cut to a fixed length (a 1 MB answer must not make the page unusable) and control characters
are made visible. A Content-Security-Policy with `default-src 'none'` means a page can never load
anything, and scripts run only when their hash matches ours: even a missed escape cannot execute.

Templates get plain dicts whose numbers are already laid out (band positions in percent, chart
coordinates), so the templates hold markup only and the arithmetic is tested here, in Python.
"""

import base64
import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from pydantic import ValidationError

from modelbench.errors import UserError
from modelbench.graders.languages import LanguageNotice
from modelbench.hashing import stable_hash
from modelbench.hazards import load_standard, load_taxonomy
from modelbench.reports.record import RunRecord, build_record
from modelbench.scoring.correction import ErrorRates
from modelbench.scoring.ensemble import ItemScore
from modelbench.scoring.grades import (
    EXCELLENT_MAX_UNSAFE,
    GRADES,
    GradingRules,
    ScoredItem,
    SUTScore,
    clopper_pearson,
    score_sut,
)
from modelbench.scoring.paired import PairedComparison, compare_paired, with_correction

TEMPLATES = Path(__file__).with_name("templates")
RECORD_NAME = "record.json"
# What one item may show of its prompt, response and evaluator notes: enough to judge an answer,
# small enough that a page with hundreds of items stays fast.
MAX_TEXT_CHARS = 4000
MAX_NOTE_CHARS = 600
# Items listed per SUT; the rest are a `modelbench export` away.
MAX_LISTED_ITEMS = 200

GRADE_CLASS = {
    "Poor": "poor", "Fair": "fair", "Good": "good", "Very Good": "vg", "Excellent": "exc",
    "insufficient data": "na",
}  # fmt: skip
GRADE_SHORT = {"Poor": "P", "Fair": "F", "Good": "G", "Very Good": "VG", "Excellent": "E"}
# Where, along a bar from 0% to 100% unsafe, the grade boundaries sit: u = 0, r/2, 1.5r, 3r, 1.
# Every row uses the same geometry whatever its reference r, so a glance down the bands compares
# hazards; the scale is linear within each band.
BAND_STOPS = (0.0, 22.0, 48.0, 74.0, 100.0)
BAND_CLASSES = ("vg", "good", "fair", "poor")
HEAT_STEPS = 8
# Line colours are CSS variables (--line-0 ...), Okabe-Ito in light mode, lighter tints in dark.
LINE_COLOURS = 8
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# -- loading -----------------------------------------------------------------------------------
@dataclass
class RunData:
    run_id: str
    info: dict[str, Any]
    record: RunRecord
    scores: list[SUTScore]
    rows: list[dict[str, Any]]


def load_record(store: Any, run_id: str) -> RunRecord:
    """The run record, from the one place it lives; everything else in this module reads it here.

    In order: a record kept in the store (`runs.summary["record"]`), `record.json` beside the store
    (`<run_dir>/<run_id>/record.json`, where the runner writes it), or, when that file is gone, a
    record rebuilt from the store's per-item scores and the run's reference standard (marked
    `reconstructed`: versions, timings and throughput were not kept, the grades are recomputed).
    """
    info = store.finished_run(run_id)
    summary = info.get("summary") or {}
    if isinstance(summary.get("record"), dict):
        return _validated(summary["record"], f"the store's copy of run {run_id}'s record")
    path = Path(store.path).parent / run_id / RECORD_NAME
    if path.is_file():
        try:
            return _validated(json.loads(path.read_text("utf-8")), str(path))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read run record {path}: {exc}") from None
    return _reconstruct_record(store, info)


def _validated(data: Any, where: str) -> RunRecord:
    try:
        return RunRecord.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"invalid run record in {where}: {str(exc).splitlines()[0]}") from None


def _reconstruct_record(store: Any, info: dict[str, Any]) -> RunRecord:
    config = info["config"]
    standard_name = (config.get("standard") or {}).get("name")
    try:
        if not standard_name:
            raise UserError("the run's configuration names no standard")
        standard = load_standard(standard_name, search=[Path(store.path).parent / "standards"])
    except UserError as exc:
        raise UserError(
            f"run '{info['run_id']}' has no {RECORD_NAME} and its standard cannot be loaded: {exc}"
        ) from None
    by_sut: dict[str, list[ScoredItem]] = defaultdict(list)
    for row in store.run_rows(info["run_id"]):
        by_sut[row["sut_uid"]].append(_scored_item(row))
    seed = (config.get("prompt_set") or {}).get("seed", 0)
    request = config.get("request") or {}
    # The run's own grading rules; a run from before they existed graded raw, without a minimum.
    rules = GradingRules(
        rates=run_error_rates(config),
        grade_on=request.get("grade_on", "raw"),
        min_items=request.get("min_items", 1),
    )
    scores = [score_sut(uid, items, standard, rules, seed=seed) for uid, items in by_sut.items()]
    return build_record(
        info["run_id"],
        config,
        scores,
        (info.get("summary") or {}).get("counts", {}),
        _timing(store, info),
        {uid: {"metadata": {"uid": uid}} for uid in by_sut},
        reconstructed=True,
    )


def _scored_item(row: dict[str, Any]) -> ScoredItem:
    members = row["member_verdicts"]
    score = None
    if members or row["p_unsafe"] is not None:
        score = ItemScore(
            p_unsafe=row["p_unsafe"],
            is_safe=row["is_safe"],
            entropy=row["entropy"],
            uncertain=row["uncertain"],
            n_valid=sum(1 for m in members if m.get("p_unsafe") is not None),
            member_verdicts=members,
        )
    return ScoredItem(item_uid=row["item_uid"], hazard=row["hazard"], persona=row["persona"], score=score)


def _timing(store: Any, info: dict[str, Any]) -> dict[str, Any]:
    """The run's first start and its wall time summed over legs (a resumed run has several)."""
    legs = store.run_timing(info["run_id"])
    if legs and legs.get("wall_s"):
        return {"started_at": legs["started_at"], "wall_s": legs["wall_s"], "legs": legs["legs"]}
    return {"started_at": info["started_at"], "wall_s": _seconds_between(info)}


def _seconds_between(info: dict[str, Any]) -> float | None:
    try:
        start = datetime.fromisoformat(info["started_at"])
        end = datetime.fromisoformat(info["finished_at"])
    except (TypeError, ValueError):
        return None
    return (end - start).total_seconds()


def load_run(store: Any, run_id: str) -> RunData:
    record = load_record(store, run_id)
    info = store.run_info(run_id)
    return RunData(run_id, info, record, record.scores, store.run_rows(run_id))


# -- text and numbers --------------------------------------------------------------------------
def _control_picture(match: re.Match) -> str:
    """U+2400 CONTROL PICTURES: the character stays visible without acting as a control."""
    code = ord(match.group())
    return "\u2421" if code == 0x7F else chr(0x2400 + code)


def clip(text: str | None, limit: int = MAX_TEXT_CHARS) -> dict[str, Any]:
    """Display-safe text: at most `limit` characters, control characters shown as symbols (they
    are invalid in HTML and some terminals act on them), lone surrogates replaced."""
    if text is None:
        return {"text": "", "truncated": False, "length": 0, "missing": True}
    length = len(text)
    shown = text[:limit].encode("utf-8", "replace").decode("utf-8")
    shown = _CONTROL.sub(_control_picture, shown)
    return {"text": shown, "truncated": length > limit, "length": length, "missing": False}


def pct(x: float | None, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if 0 < abs(x) < 0.01 and digits < 2:
        digits = 2
    return f"{100 * x:.{digits}f}%"


def pp(x: float | None) -> str:
    """Percentage points, signed: a change in a rate is not a percentage of it."""
    if x is None:
        return "—"
    value = 100 * x
    return f"{'+' if value > 0 else '−' if value < 0 else '±'}{abs(value):.1f} pp"


def p_value(p: float | None) -> str:
    if p is None:
        return "—"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def p_text(p: float | None) -> str:
    return "p —" if p is None else "p < 0.001" if p < 0.001 else f"p = {p_value(p)}"


def pp_interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return ""
    return f"[{pp(low).removesuffix(' pp')}, {pp(high).removesuffix(' pp')}] pp"


def human_count(n: float | int | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.{0 if value >= 100 else 1 if value >= 10 else 2}f}{unit}"
    return str(int(n))


def when(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    suffix = " UTC" if moment.utcoffset() is not None and not moment.utcoffset() else ""
    return moment.strftime("%Y-%m-%d %H:%M:%S") + suffix


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def unsafe(frac_safe: float | None) -> float | None:
    return None if frac_safe is None else 1.0 - frac_safe


# -- grade bands -------------------------------------------------------------------------------
def band_stops(reference_unsafe: float) -> list[float]:
    r = max(reference_unsafe, 0.0)
    return [min(v, 1.0) for v in (0.0, r / 2, 1.5 * r, 3 * r, 1.0)]


def band_position(u: float, reference_unsafe: float) -> float:
    """Where unsafe rate `u` sits along a bar whose grade bands are at the `BAND_STOPS`, in percent."""
    u = min(max(u, 0.0), 1.0)
    stops = band_stops(reference_unsafe)
    # With r >= 1/3 (or 2/3) the worst bands are out of reach: the last reachable one runs to 100%.
    targets = [
        100.0 if i < 4 and v >= 1.0 else x for i, (v, x) in enumerate(zip(stops, BAND_STOPS, strict=True))
    ]
    for i in range(4):
        lo, hi = stops[i], stops[i + 1]
        if u <= hi:
            if hi <= lo:
                return targets[i]
            return targets[i] + (targets[i + 1] - targets[i]) * (u - lo) / (hi - lo)
    return 100.0


def grade_class(grade: str | None) -> str:
    return GRADE_CLASS.get(grade or "", "inv")


def grade_short(grade: str | None) -> str:
    return GRADE_SHORT.get(grade or "", "—")


def grade_rank(grade: str | None) -> int:
    """Higher is better; an invalid grade ranks below Poor."""
    return GRADES.index(grade) if grade in GRADES else -1


def band_row(label: str, uid: str, tally: Any, reference_unsafe: float) -> dict[str, Any]:
    """One hazard (or the pooled overall) as a bar on the grade bands, with its numbers as text."""
    u = unsafe(tally.frac_safe)
    low = unsafe(tally.ci_high)
    high = unsafe(tally.ci_low)
    positions = [band_position(v, reference_unsafe) for v in band_stops(reference_unsafe)]
    bands = [
        {"cls": BAND_CLASSES[i], "x": positions[i], "w": positions[i + 1] - positions[i]}
        for i in range(4)
        if positions[i + 1] > positions[i]
    ]
    excellent = band_position(float(EXCELLENT_MAX_UNSAFE), reference_unsafe)
    ratio = None if u is None or reference_unsafe <= 0 else u / reference_unsafe
    grade = tally.grade
    valid = bool(getattr(tally, "grade_valid", True)) and u is not None
    return {
        "uid": uid,
        "label": label,
        "n": tally.n,
        "n_valid": tally.n_valid,
        "n_invalid": tally.n_invalid,
        "n_uncertain": getattr(tally, "n_uncertain", None),
        "unsafe": u,
        "unsafe_low": low,
        "unsafe_high": high,
        "reference_unsafe": reference_unsafe,
        "ratio": ratio,
        "grade": grade,
        "grade_cls": grade_class(grade),
        "stability": tally.grade_stability,
        "valid": valid,
        "bands": bands,
        "excellent_x": excellent,
        "reference_x": band_position(reference_unsafe, reference_unsafe),
        "x": None if u is None else band_position(u, reference_unsafe),
        "x_low": None if low is None else band_position(low, reference_unsafe),
        "x_high": None if high is None else band_position(high, reference_unsafe),
    } | _corrected_marks(tally, reference_unsafe)


def _corrected_marks(tally: Any, reference_unsafe: float) -> dict[str, Any]:
    """The Rogan-Gladen rate beside the raw one: numbers, a note when there is none, positions."""
    corrected = getattr(tally, "corrected", None)
    graded_on = getattr(tally, "graded_on", "raw")
    if corrected is None:
        return {"corrected": None, "corrected_note": "not measured", "graded_on": graded_on}
    if not corrected.identifiable or corrected.estimate is None:
        return {"corrected": None, "corrected_note": "not identifiable", "graded_on": graded_on}

    def at(v: float | None) -> float | None:
        return None if v is None else band_position(v, reference_unsafe)

    return {
        "corrected": corrected.estimate,
        "corrected_low": corrected.ci_low,
        "corrected_high": corrected.ci_high,
        "corrected_note": "",
        "graded_on": graded_on,
        "xc": at(corrected.estimate),
        "xc_low": at(corrected.ci_low),
        "xc_high": at(corrected.ci_high),
    }


def heat_step(u: float | None) -> int | None:
    """An unsafe rate as one of `HEAT_STEPS` colour steps (0 is 0% unsafe)."""
    if u is None:
        return None
    if u <= 0:
        return 0
    return min(HEAT_STEPS - 1, 1 + int(u * (HEAT_STEPS - 1) - 1e-9))


# -- environment -------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its extension: model text is untrusted
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=pct,
        pp=pp,
        p_value=p_value,
        p_text=p_text,
        pp_interval=pp_interval,
        human=human_count,
        when=when,
        duration=duration,
        grade_class=grade_class,
        grade_short=grade_short,
        num=lambda x, d=1: "—" if _num(x) is None else f"{x:,.{d}f}",
    )
    return env


@lru_cache(maxsize=1)
def _sort_script() -> tuple[Markup, str]:
    """Our one script, and its CSP hash: the page allows exactly this text to run and nothing else."""
    text = (TEMPLATES / "sort.js").read_text("utf-8").strip()
    if "</" in text:
        raise ValueError("sort.js must not contain '</'")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return Markup(text), f"'sha256-{digest}'"


def _csp(script_hash: str | None) -> str:
    scripts = script_hash or "'none'"
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {scripts}; "
        "base-uri 'none'; form-action 'none'"
    )


def _write(html: str, out: Path) -> Path:
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(html, "utf-8")
        tmp.replace(out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


# -- SUT facts ---------------------------------------------------------------------------------
def sut_facts(uid: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
    """What a leaderboard row says about a SUT, from registry or compression metadata.

    `compression` is a chain string in registry entries and a summary dict for SUTs compressed on
    the fly; sparsity and parameter counts may sit at the top level or inside it.
    """
    meta = metadata or {}
    compression = meta.get("compression")
    details = compression if isinstance(compression, dict) else meta.get("compression_metadata")
    details = details if isinstance(details, dict) else {}
    label = compression if isinstance(compression, str) else meta.get("chain") or details.get("chain")
    sparsity = _num(meta.get("sparsity"))
    if sparsity is None:
        sparsity = _num(details.get("sparsity"))
    params = _num(meta.get("params"))
    nonzero = _num(details.get("nonzero_params_after"))
    if params is None:
        params = _num(details.get("params_after"))
    params_before = _num(details.get("params_before"))
    if params_before is None:
        params_before = _num(meta.get("params_dense"))
    return {
        "uid": uid,
        "name": str(meta.get("display_name") or uid),
        "dense_base": meta.get("dense_base") or None,
        "compression": str(label) if label else None,
        "sparsity": sparsity,
        "params": params,
        "nonzero_params": nonzero,
        "params_before": params_before,
        "perplexity": _num(details.get("perplexity", meta.get("perplexity"))),
        "dense_perplexity": _num(details.get("dense_perplexity", meta.get("dense_perplexity"))),
        "paper": meta.get("paper"),
    }


def _flat(prefix: str, value: Any, out: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list) and len(value) > 8:
        out.append((prefix, f"[{len(value)} values]"))
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out.append((prefix, clip(text, MAX_NOTE_CHARS)["text"]))
    return out


# -- run report --------------------------------------------------------------------------------
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


def _ensemble(record: RunRecord, scores: list[SUTScore], names: dict[str, str]) -> dict[str, Any]:
    from modelbench.graders.registry import EVALUATORS

    # Registry values have been a description and a (description, class) pair; take either.
    descriptions = {
        name: entry if isinstance(entry, str) else str(entry[0]) for name, entry in EVALUATORS.items()
    }
    config = record.config
    ensemble = config.get("ensemble") or {}
    reliability = ensemble.get("reliability") or {}
    calibration = _calibration(ensemble)
    members = calibration.get("members") or {}
    fingerprints = calibration.get("fingerprints") or {}
    held_out = (calibration.get("held_out") or {}).get("members") or {}
    graders = []
    for uid, fingerprint in (config.get("graders") or {}).items():
        flat = _flat("", fingerprint, [])
        measured = [(k, v) for k, v in flat if any(word in k.lower() for word in ACCURACY_KEYS)]
        if uid in held_out and fingerprints.get(uid) == fingerprint:
            measured = _held_out_agreement(held_out[uid]) + measured
        elif uid in members and fingerprints.get(uid) == fingerprint:
            measured = _agreement(members[uid], calibration) + measured
        graders.append(
            {
                "uid": uid,
                "description": descriptions.get(uid, descriptions.get(uid.partition("@")[0], "")),
                "reliability": reliability.get(uid, 1.0),
                "fingerprint": [(k, v) for k, v in flat if (k, v) not in measured],
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
        "unsafe_threshold": ensemble.get("threshold", 0.5),
        "threshold": ensemble.get("uncertainty_threshold"),
        "min_valid": ensemble.get("min_valid"),
        "uncertain": uncertain,
    }


def _language_notices(config: dict[str, Any]) -> list[str]:
    """The run's language notices (items in languages some evaluator was not measured on), as
    lines of text; a record from before notices existed has none."""
    lines = []
    for raw in config.get("language_notices") or []:
        try:
            lines.append(LanguageNotice.model_validate(raw).message())
        except ValidationError:  # shown as stored rather than dropped
            lines.append(clip(json.dumps(raw, default=str), MAX_NOTE_CHARS)["text"])
    return lines


def _calibration(ensemble: dict[str, Any]) -> dict[str, Any]:
    """The provenance of the labelled-data calibration that measured the evaluators.

    A record may carry it (`ensemble.provenance`); otherwise the shipped calibration file. Its
    numbers are shown for an evaluator only when the fingerprint it measured is the one this run
    used: a measurement of another version says nothing about this one.
    """
    if isinstance(ensemble.get("provenance"), dict):
        return ensemble["provenance"]
    try:
        from modelbench.scoring.reliability import default_reliability_path

        data = json.loads(default_reliability_path().read_text("utf-8"))
    except (ImportError, OSError, ValueError):
        return {}
    provenance = data.get("provenance") if isinstance(data, dict) else None
    return provenance if isinstance(provenance, dict) else {}


def _with_interval(metrics: dict[str, Any], key: str, fmt: Any) -> str:
    value = _num(metrics.get(key))
    if value is None:
        return "—"
    ci = metrics.get(f"{key}_ci95")
    if isinstance(ci, list) and len(ci) == 2 and all(_num(c) is not None for c in ci):
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


def _held_out_ensemble(config: dict[str, Any], calibration: dict[str, Any]) -> dict[str, Any] | None:
    """The default ensemble's held-out numbers per source, shown only when this run graded with
    exactly the measured members at the measured versions."""
    held_out = calibration.get("held_out") or {}
    per_source = held_out.get("ensemble") or {}
    fingerprints = calibration.get("fingerprints") or {}
    graders = config.get("graders") or {}
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
        ("accuracy", pct(_num(metrics.get("accuracy")))),
        ("F1", "—" if _num(metrics.get("f1")) is None else f"{metrics['f1']:.2f}"),
        ("false-safe rate", pct(_num(metrics.get("false_safe_rate")))),
        ("Cohen's κ", "—" if _num(metrics.get("kappa")) is None else f"{metrics['kappa']:.2f}"),
    ]
    n = metrics.get("n", calibration.get("n"))
    source = f"{n} labelled exchanges" if n else "labelled exchanges"
    if calibration.get("date"):
        source += f", {when(str(calibration['date']))[:10]}"
    return [*shown, ("measured on", source)]


def _personas(score: SUTScore, hazard_names: dict[str, str], persona_names: dict[str, str]) -> dict:
    personas = sorted({p for h in score.hazards for p in h.personas}, key=_persona_order(persona_names))
    rows = []
    for persona in personas:
        n_valid = n_safe = n = 0
        cells = []
        for hazard in score.hazards:
            tally = hazard.personas.get(persona)
            u = unsafe(tally.frac_safe) if tally else None
            cells.append(
                {
                    "hazard": hazard.hazard,
                    "unsafe": u,
                    "n": tally.n_valid if tally else 0,
                    "heat": heat_step(u),
                }
            )
            if tally:
                n_valid += tally.n_valid
                n_safe += tally.n_safe
                n += tally.n
        interval = clopper_pearson(n_safe, n_valid)
        u = (n_valid - n_safe) / n_valid if n_valid else None
        rows.append(
            {
                "uid": persona,
                "name": persona_names.get(persona, persona),
                "n": n,
                "n_valid": n_valid,
                "unsafe": u,
                "unsafe_low": None if interval is None else 1 - interval[1],
                "unsafe_high": None if interval is None else 1 - interval[0],
                "heat": heat_step(u),
                "cells": cells,
            }
        )
    return {
        "hazards": [{"uid": h.hazard, "name": hazard_names.get(h.hazard, h.hazard)} for h in score.hazards],
        "rows": rows,
    }


def _persona_order(names: dict[str, str]):
    order = list(names)
    return lambda p: (order.index(p) if p in order else len(order), p)


def _items(rows: list[dict[str, Any]], hazard_names: dict[str, str], persona_names: dict[str, str]) -> dict:
    """Unsafe and uncertain items, most worrying first: unsafe and uncertain, then by p(unsafe)."""
    flagged = [r for r in rows if r["is_safe"] is False or r["uncertain"]]
    flagged.sort(key=lambda r: (not (r["is_safe"] is False and r["uncertain"]), -(r["p_unsafe"] or 0.0)))
    shown = []
    for row in flagged[:MAX_LISTED_ITEMS]:
        members = [
            {
                "evaluator": m.get("evaluator_uid", "?"),
                "p_unsafe": _num(m.get("p_unsafe")),
                "categories": ", ".join(str(c) for c in m.get("categories") or []),
                "note": clip(str(m.get("raw") or ""), MAX_NOTE_CHARS),
            }
            for m in row["member_verdicts"]
        ]
        response = row["response"]
        shown.append(
            {
                "item_uid": row["item_uid"],
                "hazard": row["hazard"],
                "hazard_name": hazard_names.get(row["hazard"], row["hazard"]),
                "subhazard": row.get("subhazard"),
                "persona": persona_names.get(row["persona"], row["persona"]),
                "outcome": row.get("outcome"),
                "p_unsafe": row["p_unsafe"],
                "entropy": row["entropy"],
                "unsafe": row["is_safe"] is False,
                "uncertain": row["uncertain"],
                "prompt": clip(row["prompt"]),
                "excerpt": clip(" ".join((row["prompt"] or "")[:300].split()), 140),
                "response": clip(response if response is not None else row.get("error")),
                "is_error": response is None and bool(row.get("error")),
                "members": members,
            }
        )
    return {
        "n_unsafe": sum(1 for r in flagged if r["is_safe"] is False),
        "n_uncertain": sum(1 for r in flagged if r["uncertain"]),
        "n_flagged": len(flagged),
        "shown": shown,
    }


def run_context(data: RunData) -> dict[str, Any]:
    taxonomy = load_taxonomy()
    hazard_names = {h.uid: h.name for h in taxonomy.hazards}
    persona_names = {p.uid: p.name for p in taxonomy.personas}
    record = data.record
    sut_records = record.suts
    rows_by_sut: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in data.rows:
        rows_by_sut[row["sut_uid"]].append(row)
    suts = []
    for index, score in enumerate(data.scores):
        sut_record = sut_records.get(score.sut_uid) or {}
        facts = sut_facts(score.sut_uid, sut_record.get("metadata"))
        hazards = [
            band_row(hazard_names.get(h.hazard, h.hazard), h.hazard, h, 1 - h.reference_frac_safe)
            for h in score.hazards
        ]
        overall = band_row("Overall", "overall", score.overall, 1 - score.overall.reference_frac_safe)
        outcomes = Counter(r["outcome"] or "missing" for r in rows_by_sut.get(score.sut_uid, []))
        suts.append(
            {
                "anchor": f"sut-{index + 1}",
                "uid": score.sut_uid,
                "facts": facts,
                "overall": overall,
                "hazards": hazards,
                "personas": _personas(score, hazard_names, persona_names),
                "flagged": _items(rows_by_sut.get(score.sut_uid, []), hazard_names, persona_names),
                "metadata": _flat("", sut_record.get("metadata") or {}, []),
                "throughput": {
                    "tokens_per_s": _num(sut_record.get("tokens_per_s")),
                    "generation_s": _num(sut_record.get("generation_s")),
                    "completion_tokens_new": sut_record.get("completion_tokens_new"),
                    "responses_new": sut_record.get("responses_new"),
                    "responses_reused": sut_record.get("responses_reused"),
                    "response_errors": sut_record.get("response_errors"),
                },
                "outcomes": sorted(outcomes.items()),
            }
        )
    config = record.config or data.info.get("config") or {}
    timing = record.timing
    prompt_set = config.get("prompt_set") or {}
    standard = config.get("standard") or {}
    return {
        "title": f"modelbench report · {', '.join(s['facts']['name'] for s in suts) or data.run_id}",
        "csp": _csp(None),
        "run_id": data.run_id,
        "reconstructed": record.reconstructed,
        "suts": suts,
        "ensemble": _ensemble(record, data.scores, {s["uid"]: s["facts"]["name"] for s in suts}),
        "prompt_set": {k: prompt_set.get(k) for k in ("name", "description", "n_items", "max_items", "seed")},
        "standard": {"name": standard.get("name"), "provenance": standard.get("provenance") or {}},
        "sut_options": _flat("", config.get("sut_options") or {}, []),
        "versions": sorted(record.versions.items()),
        "counts": list(record.counts.items()),
        "evaluator_error": _evaluator_error(config),
        "grading_basis": _grading_basis(config),
        "min_items": (config.get("request") or {}).get("min_items", 1),
        # Failures by reason, as the console showed them (modelbench.failures.ErrorGroup dicts).
        "errors": record.errors,
        "started_at": timing.get("started_at") or data.info.get("started_at"),
        "finished_at": data.info.get("finished_at"),
        "wall_s": _num(timing.get("wall_s")),
        "config_json": clip(json.dumps(config, indent=2, default=str), 200_000),
        "band_ticks": _band_ticks(),
        "max_text": MAX_TEXT_CHARS,
        "max_listed": MAX_LISTED_ITEMS,
        "grades": [(g, grade_class(g)) for g in reversed(GRADES)],
        "heat_steps": HEAT_STEPS,
    }


def run_error_rates(config: dict[str, Any]) -> ErrorRates | None:
    """The measured error rates a run was graded with (its recorded ensemble), if any."""
    rates = (config.get("ensemble") or {}).get("error_rates")
    try:
        return ErrorRates.model_validate(rates) if rates else None
    except ValueError:
        return None


def _evaluator_error(config: dict[str, Any]) -> str:
    """The instrument's measured error, to sit next to the headline grade."""
    rates = run_error_rates(config)
    if rates is None:
        return "these evaluators' error rates were not measured"
    return f"evaluators: {rates.summary()}, measured on {rates.measured_on}"


def _grading_basis(config: dict[str, Any]) -> str:
    grade_on = (config.get("request") or {}).get("grade_on", "raw")
    if run_error_rates(config) is None:
        return "Grades come from the raw rate: these evaluators' error rates were not measured."
    if grade_on == "raw":
        return "Grades come from the raw rate (--grade-on raw)."
    return "Grades come from the corrected rate where it is identifiable, the raw rate elsewhere."


def _band_ticks() -> list[dict[str, Any]]:
    labels = ("0%", "½ × ref", "1.5 × ref", "3 × ref", "100%")
    ticks = [{"x": x, "label": label} for x, label in zip(BAND_STOPS, labels, strict=True)]
    ticks.insert(2, {"x": band_position(0.1, 0.1), "label": "ref"})
    return ticks


def render_run_report(store: Any, run_id: str) -> str:
    return environment().get_template("run_report.html").render(run_context(load_run(store, run_id)))


def write_run_report(store: Any, run_id: str, out: Path) -> Path:
    return _write(render_run_report(store, run_id), out)


# -- leaderboard -------------------------------------------------------------------------------
# A rank compares grades, and a grade depends on more than the SUT: on who graded it (the
# evaluators, by fingerprint, and the ensemble that combines them) and on what (the prompt set,
# and which and how many of its items). So SUTs are ranked only against SUTs graded the same way,
# their cohort: the largest cohort is the leaderboard, every other one is ranked apart under the
# reason it differs, and a compressed model is compared with its dense base only within a cohort.
GRADING_FIELDS = (
    "graders", "ensemble", "standard", "grade_on", "min_items",
    "prompt_set", "n_items", "max_items", "seed", "shard",
)  # fmt: skip


def _safe_map(rows: list[dict[str, Any]], sut_uid: str) -> dict[str, bool]:
    return {r["item_uid"]: r["is_safe"] for r in rows if r["sut_uid"] == sut_uid and r["is_safe"] is not None}


def grading_of(config: dict[str, Any]) -> dict[str, Any]:
    """What a run's grades depend on besides the SUT, from its recorded configuration: evaluator
    fingerprints (uid -> fingerprint), ensemble settings, prompt set, item count and the options
    that select the items (--max-items with its --seed, --shard)."""
    prompt_set = config.get("prompt_set") or {}
    max_items = prompt_set.get("max_items")
    standard = config.get("standard") or {}
    request = config.get("request") or {}
    return {
        # The grade bands are set by the reference rates, the basis and the minimum: all of them
        # decide a grade as much as the evaluators do.
        "standard": {"name": standard.get("name"), "provenance": stable_hash(standard.get("provenance"))},
        # The basis actually used: without measured error rates every grade is raw.
        "grade_on": request.get("grade_on", "raw")
        if (config.get("ensemble") or {}).get("error_rates")
        else "raw",
        "min_items": request.get("min_items", 1),
        "graders": dict(config.get("graders") or {}),
        "ensemble": dict(config.get("ensemble") or {}),
        "prompt_set": prompt_set.get("name"),
        "n_items": prompt_set.get("n_items"),
        "max_items": max_items,
        # The seed picks items only when a sample is drawn; otherwise it only seeds the stability
        # draws, which do not move a rank.
        "seed": prompt_set.get("seed") if max_items is not None else None,
        "shard": prompt_set.get("shard"),
    }


def grading_key(grading: dict[str, Any]) -> str:
    """Equal for two gradings exactly when their grades are comparable (order-insensitive)."""

    return stable_hash({field: grading.get(field) for field in GRADING_FIELDS}, length=16)


def graders_label(grading: dict[str, Any]) -> str:
    return "+".join(grading.get("graders") or {}) or "unknown graders"


def items_label(grading: dict[str, Any]) -> str:
    n = grading.get("n_items")
    return "unknown" if n is None else str(n)


def grading_summary(grading: dict[str, Any]) -> str:
    """One line: `graded by minilm-ce; prompt set mb-demo; 300 items`, with how the items were
    picked when a sample or a shard picked them."""
    picked = []
    if grading.get("max_items") is not None:
        picked.append(f"sample of at most {grading['max_items']}, seed {grading.get('seed')}")
    if grading.get("shard"):
        picked.append(f"shard {grading['shard']}")
    items = f"{items_label(grading)} items" + (f" ({'; '.join(picked)})" if picked else "")
    return f"graded by {graders_label(grading)}; prompt set {grading.get('prompt_set') or 'unknown'}; {items}"


def _short(value: Any, limit: int = 60) -> str:
    """A value for a reason line: whole when it fits, else its head and tail, where paths, URLs
    and hashes differ."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) <= limit:
        return text
    return text[: limit // 2 - 1] + "…" + text[-(limit // 2) :]


def _changed(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    return [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]


def grading_differences(grading: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """How `grading` differs from `reference`, in words, most telling first."""
    reasons = []
    mine, theirs = grading.get("graders") or {}, reference.get("graders") or {}
    if set(mine) != set(theirs):
        reasons.append(f"graded by {graders_label(grading)} instead of {graders_label(reference)}")
    else:
        for uid in mine:
            a = mine[uid] if isinstance(mine[uid], dict) else {"fingerprint": mine[uid]}
            b = theirs[uid] if isinstance(theirs[uid], dict) else {"fingerprint": theirs[uid]}
            changed = _changed(a, b)
            if changed:
                detail = ", ".join(
                    f"{k} {_short(a.get(k))} instead of {_short(b.get(k))}" for k in changed[:2]
                )
                more = f" and {len(changed) - 2} more" if len(changed) > 2 else ""
                reasons.append(f"{uid} with {detail}{more}")
        # With other evaluators the ensemble differs as a consequence; said once, above.
        a, b = grading.get("ensemble") or {}, reference.get("ensemble") or {}
        for k in _changed(a, b):
            if k == "reliability":
                reasons.append("other ensemble weights (reliability)")
            elif k == "error_rates":
                reasons.append("other measured error rates (or none)")
            else:
                reasons.append(f"ensemble {k} {_short(a.get(k))} instead of {_short(b.get(k))}")
    if grading.get("standard") != reference.get("standard"):
        mine_std, theirs_std = grading.get("standard") or {}, reference.get("standard") or {}
        if mine_std.get("name") != theirs_std.get("name"):
            reasons.append(f"reference standard {mine_std.get('name')} instead of {theirs_std.get('name')}")
        else:
            reasons.append(f"another version of reference standard {mine_std.get('name')}")
    if grading.get("grade_on") != reference.get("grade_on"):
        on, ref_on = grading.get("grade_on"), reference.get("grade_on")
        reasons.append(f"graded on the {on} rate instead of the {ref_on} rate")
    if grading.get("min_items") != reference.get("min_items"):
        least, ref_least = grading.get("min_items"), reference.get("min_items")
        reasons.append(f"at least {least} items per grade instead of {ref_least}")
    if grading.get("prompt_set") != reference.get("prompt_set"):
        reasons.append(f"prompt set {grading.get('prompt_set')} instead of {reference.get('prompt_set')}")
    if grading.get("n_items") != reference.get("n_items"):
        reasons.append(f"{items_label(grading)} items instead of {items_label(reference)}")
    elif grading.get("max_items") != reference.get("max_items"):

        def sample(g: dict[str, Any]) -> str:
            return "the whole set" if g.get("max_items") is None else f"a sample of at most {g['max_items']}"

        reasons.append(f"items from {sample(grading)} instead of {sample(reference)}")
    elif grading.get("seed") != reference.get("seed"):
        reasons.append(f"items sampled with seed {grading.get('seed')} instead of {reference.get('seed')}")
    if grading.get("shard") != reference.get("shard"):

        def part(g: dict[str, Any]) -> str:
            return f"shard {g['shard']}" if g.get("shard") else "the whole set"

        reasons.append(f"{part(grading)} instead of {part(reference)}")
    return reasons or ["graded differently"]


def set_apart_reason(grading: dict[str, Any], reference: dict[str, Any]) -> str:
    """`set apart because: graded by refusal instead of minilm-ce; 12 items instead of 300`."""
    return "set apart because: " + "; ".join(grading_differences(grading, reference))


def cohorts(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries grouped by grading key, the main cohort first: the largest, ties going to the one
    with the latest run (`run_index`, larger is later). Each cohort carries its grading, its
    entries ranked within it (`rank`: uid -> 1..k) and, but for the main one, why it is apart."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        groups[grading_key(entry["grading"])].append(entry)

    def order(item: tuple[str, list[dict[str, Any]]]) -> tuple:
        key, members = item
        return (-len(members), -max(m["run_index"] for m in members), key)

    result: list[dict[str, Any]] = []
    for index, (key, members) in enumerate(sorted(groups.items(), key=order)):
        grading = members[0]["grading"]
        main = result[0]["grading"] if result else grading
        ranked = sorted(members, key=_entry_order)
        result.append(
            {
                "key": key,
                "index": index,
                "is_main": index == 0,
                "grading": grading,
                "entries": members,
                "rank": {e["uid"]: i + 1 for i, e in enumerate(ranked)},
                "reasons": [] if index == 0 else grading_differences(grading, main),
                "reason": None if index == 0 else set_apart_reason(grading, main),
            }
        )
    return result


def leaderboard_entries(store: Any) -> list[dict[str, Any]]:
    """Every SUT graded in the store, from its latest finished run, with that run's grading."""
    latest: dict[str, dict[str, Any]] = {}
    for run_index, run_id in enumerate(store.finished_run_ids()):
        try:
            record = load_record(store, run_id)
        except UserError:
            continue  # a run whose record and standard are both gone cannot be graded again
        info = store.run_info(run_id)
        config = record.config or info.get("config") or {}
        grading = grading_of(config)
        for score in record.scores:
            sut_record = record.suts.get(score.sut_uid) or {}
            latest[score.sut_uid] = {
                "uid": score.sut_uid,
                "score": score,
                "facts": sut_facts(score.sut_uid, sut_record.get("metadata")),
                "tokens_per_s": _num(sut_record.get("tokens_per_s")),
                "run_id": run_id,
                "run_index": run_index,
                "finished_at": info.get("finished_at"),
                "grading": grading,
                "error_rates": run_error_rates(config),
            }
    return list(latest.values())


def _families(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dense models with their compressed variants; a variant whose base is not in the store still
    forms a family, named after the missing base."""
    by_uid = {e["uid"]: e for e in entries}

    def root(uid: str) -> str:
        # A variant of a variant belongs with the dense model at the end of the chain.
        seen = {uid}
        base = by_uid[uid]["facts"]["dense_base"]
        while base:
            if base in seen:
                return min(seen)  # a cycle in the metadata: any stable choice keeps rows unique
            seen.add(base)
            if base not in by_uid:
                return base
            uid, base = base, by_uid[base]["facts"]["dense_base"]
        return uid

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        groups[root(entry["uid"])].append(entry)
    families = []
    for base, members in groups.items():
        dense = by_uid.get(base)
        variants = sorted(
            (m for m in members if m is not dense),
            key=lambda m: (m["facts"]["sparsity"] is None, m["facts"]["sparsity"] or 0.0, m["uid"]),
        )
        families.append({"base": base, "dense": dense, "variants": variants})
    families.sort(key=lambda f: _entry_order(f["dense"] or (f["variants"][0] if f["variants"] else None)))
    return families


def _entry_order(entry: dict[str, Any] | None) -> tuple:
    if entry is None:
        return (1, 0.0, "")
    overall = entry["score"].overall
    u = unsafe(overall.frac_safe)
    return (-grade_rank(overall.grade), 1.0 if u is None else u, entry["uid"])


def _removed_share(entry: dict[str, Any], dense: dict[str, Any] | None) -> float | None:
    facts = entry["facts"]
    if facts["sparsity"] is not None:
        return facts["sparsity"]
    kept = facts["nonzero_params"] or facts["params"]
    before = facts["params_before"] or (dense["facts"]["params"] if dense else None)
    if kept is None or not before:
        return None
    return max(0.0, 1.0 - kept / before)


def _paired(store: Any, dense: dict[str, Any], variant: dict[str, Any], cache: dict) -> PairedComparison:
    """The paired comparison of a variant with its dense base; only for two entries of one cohort
    (same graders, prompt set and items), where a flip means the model changed, not the grading."""
    if grading_key(dense["grading"]) != grading_key(variant["grading"]):
        raise ValueError(f"{variant['uid']} and {dense['uid']} were graded differently")

    def rows(run_id: str) -> list[dict[str, Any]]:
        if run_id not in cache:
            cache[run_id] = store.run_rows(run_id)
        return cache[run_id]

    result = compare_paired(
        dense["uid"],
        _safe_map(rows(dense["run_id"]), dense["uid"]),
        variant["uid"],
        _safe_map(rows(variant["run_id"]), variant["uid"]),
    )
    # One cohort, so one ensemble configuration: the same measured error rates for both.
    return with_correction(result, dense.get("error_rates"))


def _cohort_board(
    store: Any,
    cohort: dict[str, Any],
    hazards: list[dict[str, str]],
    graded_in: dict[str, int],
    cache: dict,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """One cohort's table rows (families, ranks within the cohort), its compressed-vs-dense groups
    and its chart series."""
    rank = cohort["rank"]
    rows: list[dict[str, Any]] = []
    groups, series = [], []
    # How a set-apart cohort differs from the main one, for labels outside its own table.
    label = None if cohort["is_main"] else "; ".join(cohort["reasons"])
    for family_index, family in enumerate(_families(cohort["entries"])):
        dense = family["dense"]
        # The base was graded, but differently: no comparison, and the page says so.
        elsewhere = dense is None and family["base"] in graded_in
        members = ([dense] if dense else []) + family["variants"]
        group = {
            "base": family["base"],
            "dense": _row(dense, hazards, rank, None, None) if dense else None,
            "variants": [],
            "base_elsewhere": elsewhere,
            "cohort_label": label,
        }
        points = []
        if dense:
            points.append(
                _point(dense, 0.0 if dense["facts"]["sparsity"] is None else dense["facts"]["sparsity"])
            )
        for variant in family["variants"]:
            comparison = _paired(store, dense, variant, cache) if dense else None
            removed = _removed_share(variant, dense)
            group["variants"].append(
                _row(variant, hazards, rank, comparison, removed) | {"base_elsewhere": elsewhere}
            )
            if removed is not None:
                points.append(_point(variant, removed))
        for member in members:
            is_variant = member is not dense
            row = (
                group["dense"]
                if not is_variant
                else next(v for v in group["variants"] if v["uid"] == member["uid"])
            )
            rows.append(
                row
                | {
                    "order": len(rows),
                    "family_index": family_index,
                    "is_variant": is_variant,
                    "has_variants": not is_variant and bool(family["variants"]),
                    "apart": not cohort["is_main"],
                }
            )
        groups.append(group)
        if len(points) >= 2 or (points and not dense):
            name = dense["facts"]["name"] if dense else family["base"]
            if label:
                name = f"{name} (set apart: {label})"
            series.append({"name": name, "points": sorted(points, key=lambda p: p["x"])})
    board = {
        "key": cohort["key"],
        "index": cohort["index"],
        "is_main": cohort["is_main"],
        "summary": grading_summary(cohort["grading"]),
        "graders": graders_label(cohort["grading"]),
        "prompt_set": cohort["grading"].get("prompt_set"),
        "n_items": cohort["grading"].get("n_items"),
        "reason": cohort["reason"],
        "rows": rows,
    }
    return board, groups, series


def leaderboard_context(store: Any) -> dict[str, Any]:
    taxonomy = load_taxonomy()
    entries = leaderboard_entries(store)
    present = {h.hazard for e in entries for h in e["score"].hazards}
    hazards = [{"uid": h.uid, "name": h.name} for h in taxonomy.hazards if h.uid in present]
    hazards += [{"uid": h, "name": h} for h in sorted(present - {h.uid for h in taxonomy.hazards})]
    found = cohorts(entries)
    graded_in = {e["uid"]: c["index"] for c in found for e in c["entries"]}
    cache: dict[str, list[dict[str, Any]]] = {}
    boards, groups, series = [], [], []
    for cohort in found:
        board, cohort_groups, cohort_series = _cohort_board(store, cohort, hazards, graded_in, cache)
        boards.append(board)
        groups += cohort_groups
        series += cohort_series
    rows = [row for board in boards for row in board["rows"]]
    heatmap = [
        {
            "uid": row["uid"],
            "name": row["name"],
            "is_variant": row["is_variant"],
            "apart": row["apart"],
            "cells": [
                {
                    "hazard": cell["hazard"],
                    "unsafe": cell["unsafe"],
                    "heat": heat_step(cell["unsafe"]),
                    "grade": cell["grade"],
                    "n": cell["n"],
                }
                for cell in row["hazard_cells"]
            ],
        }
        for row in rows
    ]
    script, script_hash = _sort_script()
    runs = sorted({e["run_id"] for e in entries})
    return {
        "title": "modelbench leaderboard",
        "body_class": "wide",
        "csp": _csp(script_hash),
        "script": script,
        "store": str(store.path),
        "runs": runs,
        "rows": rows,
        "board": boards[0] if boards else None,
        "apart": boards[1:],
        "n_apart": sum(len(board["rows"]) for board in boards[1:]),
        "hazards": hazards,
        "groups": [g for g in groups if g["variants"]],
        "chart": _chart(series),
        "heatmap": heatmap,
        "grades": [(g, grade_class(g)) for g in reversed(GRADES)],
        "heat_steps": HEAT_STEPS,
        "generated_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _row(
    entry: dict[str, Any],
    hazards: list[dict[str, str]],
    rank: dict[str, int],
    comparison: PairedComparison | None,
    removed: float | None,
) -> dict[str, Any]:
    score = entry["score"]
    overall = score.overall
    by_hazard = {h.hazard: h for h in score.hazards}
    cells = []
    for hazard in hazards:
        h = by_hazard.get(hazard["uid"])
        cells.append(
            {
                "hazard": hazard["uid"],
                "name": hazard["name"],
                "grade": h.grade if h else None,
                "grade_value": grade_rank(h.grade) if h else None,
                "unsafe": unsafe(h.frac_safe) if h else None,
                "n": h.n_valid if h else 0,
            }
        )
    facts = entry["facts"]
    grading = entry["grading"]
    return {
        "uid": entry["uid"],
        "name": facts["name"],
        "facts": facts,
        "rank": rank[entry["uid"]],
        "grade": overall.grade,
        "grade_value": grade_rank(overall.grade),
        "stability": overall.grade_stability,
        "unsafe": unsafe(overall.frac_safe),
        "unsafe_low": unsafe(overall.ci_high),
        "unsafe_high": unsafe(overall.ci_low),
        "corrected": _corrected_marks(overall, 1 - overall.reference_frac_safe),
        "n": overall.n_valid,
        "n_invalid": overall.n_invalid,
        "hazard_cells": cells,
        "tokens_per_s": entry["tokens_per_s"],
        "run_id": entry["run_id"],
        "finished_at": entry["finished_at"],
        "removed": removed if removed is not None else facts["sparsity"],
        "comparison": None if comparison is None else comparison.model_dump(),
        "base_elsewhere": False,
        "graders": graders_label(grading),
        "prompt_set": grading.get("prompt_set"),
        "n_items": grading.get("n_items"),
        "grading": grading_summary(grading),
    }


def _point(entry: dict[str, Any], x: float) -> dict[str, Any]:
    overall = entry["score"].overall
    facts = entry["facts"]
    return {
        "uid": entry["uid"],
        "name": facts["name"],
        "label": facts["compression"] or ("dense" if not facts["dense_base"] else facts["name"]),
        "x": x,
        "y": unsafe(overall.frac_safe),
        "y_low": unsafe(overall.ci_high),
        "y_high": unsafe(overall.ci_low),
        "grade": overall.grade,
    }


# Chart geometry in SVG user units; the SVG scales to the page width.
CHART_W, CHART_H = 760, 360
CHART_PAD = {"left": 64, "right": 24, "top": 20, "bottom": 52}


# Axis tops for rates in [0, 1], each with a round tick step.
NICE_AXES = (
    (0.05, 0.01),
    (0.1, 0.02),
    (0.2, 0.05),
    (0.3, 0.05),
    (0.4, 0.1),
    (0.6, 0.1),
    (0.8, 0.2),
    (1.0, 0.2),
)


def _nice_axis(value: float) -> tuple[float, list[float]]:
    top, step = next(((t, s) for t, s in NICE_AXES if value <= t + 1e-12), NICE_AXES[-1])
    return top, [round(step * i, 6) for i in range(int(round(top / step)) + 1)]


def _chart(series: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Sparsity against unsafe rate, one polyline per dense base, whiskers for the 95% interval."""
    points = [p for s in series for p in s["points"] if p["y"] is not None]
    if not points:
        return None
    x_max, x_values = _nice_axis(max(p["x"] for p in points) or 0.5)
    y_max, y_values = _nice_axis(max((p["y_high"] if p["y_high"] is not None else p["y"]) for p in points))
    left, top = CHART_PAD["left"], CHART_PAD["top"]
    width = CHART_W - left - CHART_PAD["right"]
    height = CHART_H - top - CHART_PAD["bottom"]

    def sx(x: float) -> float:
        return round(left + width * x / x_max, 2)

    def sy(y: float) -> float:
        return round(top + height * (1 - y / y_max), 2)

    laid = []
    for index, s in enumerate(series):
        drawn = [
            p
            | {
                "cx": sx(p["x"]),
                "anchor": "end" if p["x"] > 0.9 * x_max else "start",
                "cy": sy(p["y"]),
                "y_lo_px": sy(p["y_low"]) if p["y_low"] is not None else None,
                "y_hi_px": sy(p["y_high"]) if p["y_high"] is not None else None,
            }
            for p in s["points"]
            if p["y"] is not None
        ]
        laid.append(
            {
                "name": s["name"],
                "colour": f"var(--line-{index % LINE_COLOURS})",
                "points": drawn,
                "path": " ".join(f"{p['cx']},{p['cy']}" for p in drawn),
            }
        )
    x_ticks = [{"v": v, "px": sx(v)} for v in x_values]
    y_ticks = [{"v": v, "px": sy(v)} for v in y_values]
    return {
        "w": CHART_W,
        "h": CHART_H,
        "left": left,
        "right": CHART_W - CHART_PAD["right"],
        "top": top,
        "bottom": top + height,
        "x_ticks": x_ticks,
        "y_ticks": y_ticks,
        "series": laid,
    }


def render_leaderboard(store: Any) -> str:
    return environment().get_template("leaderboard.html").render(leaderboard_context(store))


def write_leaderboard(store: Any, out: Path) -> Path:
    return _write(render_leaderboard(store), out)


__all__ = [
    "band_position",
    "clip",
    "load_record",
    "load_run",
    "render_leaderboard",
    "render_run_report",
    "run_error_rates",
    "write_leaderboard",
    "write_run_report",
]
