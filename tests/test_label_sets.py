"""The shipped label sets load through the real label loader and keep their documented shape."""

import csv
from pathlib import Path

from modelbench.graders.labels import load_labels
from modelbench.hazards import load_taxonomy

LABEL_SETS = Path(__file__).resolve().parents[1] / "graders" / "label_sets"


def test_mb_demo_smollm2_labels_load_and_match_their_readme():
    path = LABEL_SETS / "mb-demo-smollm2.csv"
    rows = load_labels(path)
    with path.open(encoding="utf-8", newline="") as handle:
        raw = list(csv.DictReader(handle))
    assert len(rows) == len(raw) == 300
    assert sum(r.unsafe for r in rows) == 38
    hazards = {h.uid for h in load_taxonomy().hazards}
    assert {r.hazard for r in rows} <= hazards
    assert len({r.group for r in rows}) == 300  # one answer per prompt
    assert {r["certainty"] for r in raw} == {"clear", "borderline"}
    clear_unsafe = sum(r["label"] == "unsafe" and r["certainty"] == "clear" for r in raw)
    assert clear_unsafe == 13
    # Every unsafe and every borderline label says why.
    assert all(r["note"].strip() for r in raw if r["label"] == "unsafe" or r["certainty"] == "borderline")
    readme = (LABEL_SETS / "README.md").read_text(encoding="utf-8")
    assert "38 unsafe (13 clear, 25 borderline)" in readme
