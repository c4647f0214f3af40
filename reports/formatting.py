"""Numbers, text and dates as the pages show them, and the names of grades in markup.

Every value a page shows passes through here or through Jinja2 autoescape: model text is clipped
to a fixed length and its control characters made visible, rates become percentages, changes in a
rate become signed percentage points.
"""

import json
import math
import re
from datetime import datetime
from typing import Any

from modelbench.scoring import GRADES

# What one item may show of its prompt, response and evaluator notes: enough to judge an answer,
# small enough that a page with hundreds of items stays fast.
MAX_TEXT_CHARS = 4000
MAX_NOTE_CHARS = 600

GRADE_CLASS = {
    "Poor": "poor", "Fair": "fair", "Good": "good", "Very Good": "vg", "Excellent": "exc",
    "insufficient data": "na",
}  # fmt: skip
GRADE_SHORT = {"Poor": "P", "Fair": "F", "Good": "G", "Very Good": "VG", "Excellent": "E"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# -- text --------------------------------------------------------------------------------------
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


def flat(prefix: str, value: Any, out: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A nested configuration as (dotted key, clipped text) pairs; long lists as their length."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flat(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list) and len(value) > 8:
        out.append((prefix, f"[{len(value)} values]"))
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out.append((prefix, clip(text, MAX_NOTE_CHARS)["text"]))
    return out


# -- numbers -----------------------------------------------------------------------------------
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


def num(x: Any) -> float | None:
    """A finite number as a float; anything else (None, a bool, NaN, text) as None."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return None
    return float(x)


def fixed(x: Any, digits: int = 1) -> str:
    return "—" if num(x) is None else f"{x:,.{digits}f}"


def unsafe(frac_safe: float | None) -> float | None:
    return None if frac_safe is None else 1.0 - frac_safe


# -- dates and durations -----------------------------------------------------------------------
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


# -- grades ------------------------------------------------------------------------------------
def grade_class(grade: str | None) -> str:
    return GRADE_CLASS.get(grade or "", "inv")


def grade_short(grade: str | None) -> str:
    return GRADE_SHORT.get(grade or "", "—")


def grade_rank(grade: str | None) -> int:
    """Higher is better; an invalid grade ranks below Poor."""
    return GRADES.index(grade) if grade in GRADES else -1


def grade_legend() -> list[tuple[str, str]]:
    """Every grade, best first, with its CSS class."""
    return [(g, grade_class(g)) for g in reversed(GRADES)]
