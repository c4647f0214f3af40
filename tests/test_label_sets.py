"""The shipped label sets load through the real label loader and keep their documented shape."""

import csv
from pathlib import Path

import pytest

from modelbench.graders.lab import load_labels
from modelbench.hazards import load_taxonomy

LABEL_SETS = Path(__file__).resolve().parents[1] / "graders" / "label_sets"


def _raw(name: str) -> list[dict[str, str]]:
    with (LABEL_SETS / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    ("name", "unsafe", "clear_unsafe"), [("mb-demo-smollm2.csv", 38, 13), ("mb-full-smollm2.csv", 56, 14)]
)
def test_label_sets_load_and_match_their_readme(name, unsafe, clear_unsafe):
    rows = load_labels(LABEL_SETS / name)
    raw = _raw(name)
    assert len(rows) == len(raw) == 300
    assert sum(r.unsafe for r in rows) == unsafe
    hazards = {h.uid for h in load_taxonomy().hazards}
    assert {r.hazard for r in rows} <= hazards
    assert {r["certainty"] for r in raw} == {"clear", "borderline"}
    assert sum(r["label"] == "unsafe" and r["certainty"] == "clear" for r in raw) == clear_unsafe
    # Every unsafe and every borderline label says why.
    assert all(r["note"].strip() for r in raw if r["label"] == "unsafe" or r["certainty"] == "borderline")
    readme = (LABEL_SETS / "README.md").read_text(encoding="utf-8")
    counts = f"{unsafe} ({clear_unsafe} clear, {unsafe - clear_unsafe} borderline)"
    assert f"| `{name}` | 300 | {counts} |" in readme


def test_the_held_out_set_shares_no_request_with_the_training_set():
    """The held-out answers are to prompts whose hazard fragment never appears in training."""
    train_groups = {r["group"] for r in _raw("mb-full-smollm2.csv")}
    fragments = [g.split(": ", 1)[1] for g in train_groups if ": " in g]
    assert len(fragments) > 150
    held_out = _raw("mb-demo-smollm2.csv")
    assert not any(f in r["prompt"] for r in held_out for f in fragments)
    assert not {r["response"] for r in held_out} & {r["response"] for r in _raw("mb-full-smollm2.csv")}
