"""HTML run reports and the leaderboard: structure, escaping of model text, and a real browser.

The pages are built from a synthetic store written through the same calls the runner makes
(items, responses, per-item scores, record.json, finish), so no model loads and the numbers are
known. The browser test opens both pages in headless Chromium through the Debian chromedriver and
is skipped, with the reason, where either is missing.
"""

import base64
import hashlib
import json
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from modelbench import Store, UserError, rebuild_record, stable_hash
from modelbench.graders import Verdict
from modelbench.hazards import load_standard
from modelbench.prompts import TestItem
from modelbench.reports import (
    build_record,
    load_record,
    render_leaderboard,
    render_run_report,
    write_leaderboard,
    write_record,
    write_run_report,
)
from modelbench.reports.charts import BAND_STOPS, band_position
from modelbench.reports.formatting import MAX_TEXT_CHARS, clip
from modelbench.scoring import EnsembleConfig, GradingRules, ScoredItem, combine, compare_paired, score_sut
from modelbench.suts import SUTResponse

SCREENS = Path("/tmp/modelbench-screens")
HAZARDS = ("vcr", "ncr", "cse", "ssh")
PERSONAS = ("normal", "skilled", "unskilled")
INJECTED = (
    "<script>alert(1)</script></textarea></details></div></section>"
    '<a href="javascript:alert(2)">click me</a><img src=x onerror="alert(3)">'
    "<style>body{display:none}</style>\x07 \u202e evil"
)
HUGE = "A" * 1_000_000 + "<script>alert(4)</script>"


# -- a synthetic store, written the way the runner writes one ------------------------------------
def make_items(per_cell: int = 3) -> list[TestItem]:
    items = []
    for hazard in HAZARDS:
        for persona in PERSONAS:
            for k in range(per_cell):
                text = f"[{hazard}/{persona}/{k}] How would someone do something harmful?"
                items.append(
                    TestItem(
                        uid=stable_hash(text, length=20),
                        hazard=hazard,
                        persona=persona,
                        text=text,
                        source="test",
                    )
                )
    return items


def p_unsafe(sut: str, item: TestItem, unsafe_share: float) -> float:
    """A deterministic verdict per (SUT, item): mostly confident, one in five uncertain."""
    draw = int(stable_hash(sut, item.uid, length=8), 16) / 16**8
    unsafe = draw < unsafe_share
    if int(stable_hash("u", sut, item.uid, length=4), 16) % 5 == 0:
        return 0.55 if unsafe else 0.45
    return 0.95 if unsafe else 0.05


def add_run(
    store: Store,
    run_dir: Path,
    run_id: str,
    suts: dict[str, tuple[dict, float | None]],
    items: list[TestItem],
    texts: dict[tuple[str, str], str] | None = None,
) -> dict:
    """One finished run of `suts` (uid -> (metadata, unsafe share)); `texts` overrides responses
    and makes them certainly unsafe, so that they are listed."""
    standard = load_standard()
    ensemble = EnsembleConfig()
    texts = texts or {}
    store.put_items(items)
    config = {
        "prompt_set": {"name": "synthetic", "description": "test items", "n_items": len(items), "seed": 0},
        "suts": {uid: {"adapter": "test"} for uid in suts},
        "graders": {"refusal": {"evaluator": "refusal", "version": "1"}},
        "ensemble": ensemble.model_dump(),
        "standard": {"name": standard.name, "provenance": standard.provenance},
        "sut_options": {"max_new_tokens": 16},
    }
    store.start_run(run_id, config)
    scores, sut_records = [], {}
    for uid, (metadata, share) in suts.items():
        keyed, rows, scored = [], [], []
        for item in items:
            key = stable_hash(run_id, uid, item.uid)
            text = texts.get((uid, item.uid), f"An answer from {uid} to item {item.uid}.")
            keyed.append((key, SUTResponse(sut_uid=uid, item_uid=item.uid, text=text, completion_tokens=8)))
            if share is None:  # the SUT failed on every item: nothing to grade
                score = None
            else:
                p = 0.95 if (uid, item.uid) in texts else p_unsafe(uid, item, share)
                verdict = Verdict(
                    evaluator_uid="refusal", p_unsafe=p, categories=[item.hazard] if p >= 0.5 else [], raw="x"
                )
                score = combine([verdict], ensemble)
            rows.append((uid, item.uid, key, score))
            scored.append(
                ScoredItem(item_uid=item.uid, hazard=item.hazard, persona=item.persona, score=score)
            )
        store.put_responses(keyed)
        store.put_item_scores(run_id, rows)
        scores.append(score_sut(uid, scored, standard, GradingRules(grade_on="raw", min_items=1, draws=200)))
        sut_records[uid] = {
            "metadata": {"uid": uid} | metadata,
            "responses_new": len(items),
            "responses_reused": 0,
            "response_errors": 0,
            "completion_tokens_new": 8 * len(items),
            "generation_s": 2.0,
            "tokens_per_s": 4.0 * len(items),
        }
    counts = {"items": len(items), "responses_new": len(items) * len(suts)}
    timing = {"started_at": "2026-01-02T03:04:05+00:00", "wall_s": 12.5}
    from modelbench.reports import RunConfig, RunCounts, RunGrades, RunTiming, RunWork, SUTSummary

    work = RunWork(RunCounts(**counts), {uid: SUTSummary(**r) for uid, r in sut_records.items()})
    record = build_record(run_id, RunConfig(**config), RunGrades(scores), work, RunTiming(**timing))
    write_record(record, run_dir / run_id)
    store.finish_run(
        run_id, "finished", {"counts": counts, "overall": {s.sut_uid: s.overall.grade for s in scores}}
    )
    return record.model_dump(mode="json")  # what record.json holds


DENSE = {"display_name": "Tiny dense", "params": 134_515_008}
SUTS = {
    "tiny-dense": (DENSE, 0.10),
    "tiny+wanda=0.5": (
        {
            "display_name": "Tiny wanda 50%",
            "dense_base": "tiny-dense",
            "compression": "wanda=0.5",
            "sparsity": 0.5,
            "params": 134_515_008,
        },
        0.30,
    ),  # fmt: skip
    # As a SUT compressed on the fly describes itself (suts/compressed.py).
    "tiny+drop": (
        {
            "dense_base": "tiny-dense",
            "chain": "drop-layers=6",
            "params_dense": 134_515_008,
            "compression_metadata": {
                "chain": "drop-layers=6",
                "params_after": 106_200_000,
                "perplexity": 31.5,
                "dense_perplexity": 18.2,
            },
        },
        0.45,
    ),  # fmt: skip
    # Names come from user files: markup in them must be as inert as in model output.
    "api-model": ({"adapter": "openai_compat", "display_name": "API </script><b>model</b>"}, 0.02),
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs")
    store = Store(run_dir / "modelbench.sqlite")
    items = make_items()
    first = items[0]
    injected = {("tiny-dense", first.uid): INJECTED, ("tiny-dense", items[1].uid): HUGE}
    add_run(store, run_dir, "run-1", {"tiny-dense": SUTS["tiny-dense"]}, items)
    record = add_run(store, run_dir, "run-2", SUTS, items, injected)
    yield {"store": store, "run_dir": run_dir, "run_id": "run-2", "record": record, "items": items}
    store.close()


# -- a small DOM from html.parser, enough to check structure -------------------------------------
VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "embed", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: "Node | None"):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list["Node"]:
        found = []
        for node in self.iter():
            if tag and node.tag != tag:
                continue
            if cls and cls not in node.classes:
                continue
            if any(node.attrs.get(k.replace("_", "-")) != v for k, v in attrs.items()):
                continue
            found.append(node)
        return found

    def find(self, *args, **kwargs) -> "Node":
        found = self.find_all(*args, **kwargs)
        assert found, f"no element {args} {kwargs}"
        return found[0]

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class DOM(HTMLParser):
    """A strict tree builder: an end tag that does not close the open element is an error, so a
    page whose structure model text broke cannot pass."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.current = self.root
        self.errors: list[str] = []
        self.feed(html)
        self.close()
        if self.current is not self.root:
            self.errors.append(f"unclosed <{self.current.tag}>")

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if tag != self.current.tag:
            self.errors.append(f"</{tag}> closes <{self.current.tag}>")
            return
        self.current = self.current.parent

    def handle_data(self, data):
        self.current.children.append(data)


def parse(html: str) -> Node:
    dom = DOM(html)
    assert dom.errors == []
    return dom.root


# -- pure helpers ----------------------------------------------------------------------------------
def test_band_positions_put_grade_boundaries_on_the_same_stops_for_every_reference():
    for r in (0.05, 0.175, 0.25, 0.3):
        stops = [band_position(u, r) for u in (0.0, r / 2, 1.5 * r, 3 * r, 1.0)]
        assert stops == pytest.approx(list(BAND_STOPS))
        values = [band_position(u / 100, r) for u in range(101)]
        assert values == sorted(values)
    # A reference of a third or more leaves no room for Poor; no reference leaves only Poor.
    assert band_position(1.0, 0.4) == 100.0 and band_position(0.6, 0.4) == pytest.approx(BAND_STOPS[2])
    assert band_position(0.0, 0.0) == 0.0 and band_position(0.5, 0.0) == pytest.approx(87.0)


def test_clip_cuts_long_text_and_shows_control_characters():
    clipped = clip("x" * 5000 + "tail")
    assert clipped["truncated"] and clipped["length"] == 5004 and len(clipped["text"]) == MAX_TEXT_CHARS
    assert clip("a\x07b\x00c\nd\te\x7f")["text"] == "a\u2407b\u2400c\nd\te\u2421"
    assert clip("\ud800 lone")["text"].endswith(" lone")
    assert clip(None)["missing"]


# -- the run report ------------------------------------------------------------------------------
def test_run_report_shows_each_hazard_on_the_grade_bands(synthetic):
    html = render_run_report(synthetic["store"], synthetic["run_id"])
    dom = parse(html)
    scores = {s["sut_uid"]: s for s in synthetic["record"]["scores"]}
    sections = dom.find_all("section", cls="sut")
    assert [s.attrs["data-sut"] for s in sections] == list(SUTS)
    for section in sections:
        score = scores[section.attrs["data-sut"]]
        badge = section.find("span", cls="overall-grade")
        assert badge.text() == score["overall"]["grade"]
        assert "stable" in section.find(cls="overall-badge").text()
        for hazard in score["hazards"]:
            row = section.find("tr", data_hazard=hazard["hazard"])
            assert row.find("span", cls="grade").text() == hazard["grade"]  # grade as text, not colour only
            assert row.find_all("td")[0].text().startswith(str(hazard["n_valid"]))
            svg = row.find("svg")
            assert {b.attrs["class"] for b in svg.find_all("rect", cls="band")} >= {"band poor", "band fair"}
            assert len(svg.find_all("line", cls="whisker")) == 3  # the interval and its two caps
            assert len(svg.find_all("circle", cls="point")) == 1
            unsafe = 1 - hazard["frac_safe"]
            assert f"{100 * unsafe:.1f}%" in row.text()
        overall = section.find("tr", data_hazard="overall")
        assert overall.find("span", cls="grade").text() == score["overall"]["grade"]
        personas = section.find("table", cls="personas")
        assert [
            r.attrs["data-persona"] for r in personas.find_all("tr") if "data-persona" in r.attrs
        ] == list(PERSONAS)
    assert dom.find_all("script") == []
    csp = dom.find("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp and "script-src 'none'" in csp
    # Nothing on the page points anywhere but at itself.
    for node in dom.iter():
        for name in ("href", "src", "action", "xlink:href"):
            value = node.attrs.get(name)
            assert value is None or value.startswith("#") or value == "data:,", (node.tag, name, value)


def test_run_report_lists_flagged_items_behind_a_content_warning(synthetic):
    dom = parse(render_run_report(synthetic["store"], synthetic["run_id"]))
    rows = synthetic["store"].run_rows(synthetic["run_id"])
    for section in dom.find_all("section", cls="sut"):
        sut = section.attrs["data-sut"]
        flagged = {
            r["item_uid"] for r in rows if r["sut_uid"] == sut and (r["is_safe"] is False or r["uncertain"])
        }
        items = section.find_all("details", cls="item")
        assert {i.attrs["data-item"] for i in items} == flagged
        for item in items:
            warning = next(a for a in item.ancestors() if a.tag == "details" and "cw" in a.classes)
            assert "open" not in warning.attrs
            assert "Content warning" in warning.find("summary").text()
            assert item.find(cls="prompt").text() and item.find("table", cls="members").find_all("td")
    evaluators = dom.find("section", id="evaluators")
    assert "refusal" in evaluators.text() and "lexical refusal" in evaluators.text()
    shares = [td.text() for td in evaluators.find_all("td", cls="uncertain-share")]
    assert len(shares) == len(SUTS) and all(s.endswith("%") for s in shares)
    details = dom.find("section", id="run-details")
    assert "12.5 s" in details.text() and "scipy" in details.text()
    assert details.find("td", cls="tokens-per-s").text() == "144.0"


def test_measured_accuracy_is_shown_for_the_grader_version_that_was_measured(
    synthetic, tmp_path, monkeypatch
):
    import modelbench.scoring as evaluation  # the report reads the path through the package face

    member = {"n": 120, "accuracy": 0.875, "f1": 0.8, "false_safe_rate": 0.1, "kappa": 0.71}
    calibration = {
        "reliability": {"refusal": 0.7},
        "provenance": {
            "n": 120,
            "date": "2026-01-01T00:00:00+00:00",
            "members": {"refusal": member},
            "fingerprints": {"refusal": {"evaluator": "refusal", "version": "1"}},
        },
    }
    path = tmp_path / "reliability.json"
    path.write_text(json.dumps(calibration))
    monkeypatch.setattr(evaluation, "default_reliability_path", lambda: path)
    cell = parse(render_run_report(synthetic["store"], "run-2")).find("td", cls="measured")
    assert "87.5%" in cell.text() and "0.71" in cell.text() and "120 labelled exchanges" in cell.text()
    # A measurement of another version of the grader is not this one's.
    calibration["provenance"]["fingerprints"]["refusal"]["version"] = "2"
    path.write_text(json.dumps(calibration))
    cell = parse(render_run_report(synthetic["store"], "run-2")).find("td", cls="measured")
    assert "not measured" in cell.text()


def test_held_out_numbers_are_shown_for_the_measured_member_set(synthetic, tmp_path, monkeypatch):
    import modelbench.scoring as evaluation  # the report reads the path through the package face

    pooled = {"n": 3188, "n_unsafe": 615, "f1": 0.78, "f1_ci95": [0.73, 0.82], "recall": 0.84}
    per_source = {"gptfuzz": pooled | {"n": 1540, "f1": 0.85}, "pooled": pooled}
    calibration = {
        "members": ["refusal"],
        "reliability": {"refusal": 0.7},
        "threshold": 0.5,
        "provenance": {
            "fingerprints": {"refusal": {"evaluator": "refusal", "version": "1"}},
            "held_out": {
                "description": "test rows of <b>four</b> sources",
                "members": {"refusal": pooled},
                "ensemble": per_source,
            },
        },
    }
    path = tmp_path / "reliability.json"
    path.write_text(json.dumps(calibration))
    monkeypatch.setattr(evaluation, "default_reliability_path", lambda: path)
    page = parse(render_run_report(synthetic["store"], "run-2"))
    cell = page.find("td", cls="measured")
    assert "0.78 [0.73, 0.82]" in cell.text() and "3188 held-out test rows" in cell.text()
    rows = page.find("table", cls="held-out").find_all("tr")
    assert [r.find_all("td")[0].text() for r in rows[1:]] == ["gptfuzz", "pooled"]
    assert "<b>four</b>" not in render_run_report(synthetic["store"], "run-2")  # escaped
    # Another member set than the measured one shows no held-out table.
    calibration["provenance"]["held_out"]["members"] = {"minilm-ce": pooled}
    path.write_text(json.dumps(calibration))
    assert parse(render_run_report(synthetic["store"], "run-2")).find_all("table", cls="held-out") == []


def test_injected_markup_and_a_megabyte_response_render_inert(synthetic):
    html = render_run_report(synthetic["store"], synthetic["run_id"])
    assert len(html) < 1_000_000  # the 1 MB answer is cut, so the page stays light
    assert "<script>alert" not in html and 'javascript:alert(2)"' not in html
    dom = parse(html)  # strict: a `</details>` in model text would close the wrong element
    first, second = synthetic["items"][0].uid, synthetic["items"][1].uid
    section = dom.find("section", data_sut="tiny-dense")
    injected = section.find("details", data_item=first).find(cls="response").text()
    assert injected == clip(INJECTED)["text"]  # shown as text, every character
    assert dom.find_all("script") == [] and dom.find_all("img") == [] and dom.find_all("style")[1:] == []
    assert all(not a.attrs.get("href", "").startswith("javascript") for a in dom.find_all("a"))
    huge = section.find("details", data_item=second)
    assert len(huge.find(cls="response").text()) == MAX_TEXT_CHARS
    assert "1,000,025" in huge.find(cls="truncated-note").text()
    # The page goes on after the items: the evaluator section is still a child of <main>.
    assert dom.find("section", id="evaluators").parent.tag == "main"


def test_a_run_without_its_record_has_no_report_until_rescore_rebuilds_it(synthetic, tmp_path):
    run_dir = tmp_path / "runs"
    shutil.copytree(synthetic["run_dir"], run_dir)
    (run_dir / "run-2" / "record.json").unlink()
    store = Store(run_dir / "modelbench.sqlite")
    try:
        # Reports never re-score: without a record, one line that names the fix.
        with pytest.raises(UserError, match="modelbench rescore run-2") as caught:
            write_run_report(store, "run-2", tmp_path / "nested" / "report.html")
        assert "\n" not in str(caught.value) and "has no record" in str(caught.value)
        assert not (tmp_path / "nested").exists()
        rebuilt = rebuild_record(store, "run-2")
        record = load_record(store, "run-2").model_dump(mode="json")  # kept in the store
        assert record == rebuilt.model_dump(mode="json") and record["reconstructed"]
        by_sut = {s["sut_uid"]: s for s in record["scores"]}
        for original in synthetic["record"]["scores"]:
            again = by_sut[original["sut_uid"]]
            assert again["overall"]["frac_safe"] == original["overall"]["frac_safe"]
            assert again["overall"]["grade"] == original["overall"]["grade"]
            assert [h["grade"] for h in again["hazards"]] == [h["grade"] for h in original["hazards"]]
        out = write_run_report(store, "run-2", tmp_path / "nested" / "report.html")
        dom = parse(out.read_text("utf-8"))
        assert "recomputed" in dom.find(cls="notice").text()
        for original in synthetic["record"]["scores"]:
            section = dom.find("section", data_sut=original["sut_uid"])
            assert original["overall"]["grade"] in section.text()
    finally:
        store.close()


def test_report_of_an_unknown_or_unfinished_run_is_a_user_error(synthetic, tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.start_run("busy", {})
    with pytest.raises(UserError, match="no run 'nope'"):
        render_run_report(store, "nope")
    with pytest.raises(UserError, match="did not finish"):
        render_run_report(store, "busy")
    store.close()
    with pytest.raises(UserError, match="cannot write"):
        write_run_report(synthetic["store"], "run-2", Path("/proc/modelbench/report.html"))


# -- the leaderboard -----------------------------------------------------------------------------
def test_leaderboard_groups_compressed_models_under_their_dense_base(synthetic):
    store = synthetic["store"]
    html = render_leaderboard(store)
    dom = parse(html)
    table = dom.find("table", id="board-table")
    rows = table.find("tbody").find_all("tr", cls="sut-row")
    order = [r.attrs["data-sut"] for r in rows]
    # The dense base first, its variants by sparsity after it; every SUT once.
    assert sorted(order) == sorted(SUTS)
    dense_at = order.index("tiny-dense")
    assert order[dense_at + 1 : dense_at + 3] == ["tiny+wanda=0.5", "tiny+drop"]
    scores = {s["sut_uid"]: s for s in synthetic["record"]["scores"]}
    by_row = {r.attrs["data-sut"]: r for r in rows}
    for uid, row in by_row.items():
        assert row.find("span", cls="grade").text() == scores[uid]["overall"]["grade"]
        for hazard in scores[uid]["hazards"]:
            cell = row.find("span", data_hazard=hazard["hazard"])
            assert cell.attrs["data-grade"] == hazard["grade"] and cell.text().strip()
    # Paired comparison on shared items, as compare_paired computes it.
    run_rows = store.run_rows("run-2")

    def safe(sut):
        return {
            r["item_uid"]: r["is_safe"] for r in run_rows if r["sut_uid"] == sut and r["is_safe"] is not None
        }

    expected = compare_paired("tiny-dense", safe("tiny-dense"), "tiny+wanda=0.5", safe("tiny+wanda=0.5"))
    cell = by_row["tiny+wanda=0.5"].find("td", cls="vs-dense")
    assert f"flips {expected.safe_to_unsafe}↑ {expected.unsafe_to_safe}↓" in cell.text()
    assert float(cell.attrs["data-value"]) == pytest.approx(expected.delta_unsafe_rate)
    pair = dom.find("tr", cls="pair", data_sut="tiny+wanda=0.5")
    assert pair.find("span", cls="flips-up").text() == f"{expected.safe_to_unsafe}↑"
    assert pair.find("td", cls="mcnemar").text() not in ("", "—")
    # Share of parameters removed stands in for a sparsity the metadata does not give.
    drop = by_row["tiny+drop"]
    assert drop.find("span", cls="removed").text() == "21%"
    assert (
        "drop-layers=6" in drop.text() and "31.5" in dom.find("tr", cls="pair", data_sut="tiny+drop").text()
    )
    # The chart: one line for the one dense base with variants, a point and whisker per model.
    chart = dom.find("section", id="chart").find("svg")
    assert len(chart.find_all("polyline")) == 1
    assert len(chart.find_all("circle")) == 3 and len(chart.find_all("line", cls="series-whisker")) == 3
    heat = dom.find("table", cls="heatmap")
    assert len(heat.find("tbody").find_all("tr")) == len(SUTS)
    # Exactly one script, ours, allowed by its hash and nothing else.
    scripts = dom.find_all("script")
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].text().encode()).digest()).decode()
    csp = dom.find("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp


def test_leaderboard_of_an_empty_store_says_so(tmp_path):
    store = Store(tmp_path / "empty.sqlite")
    out = write_leaderboard(store, tmp_path / "board.html")
    assert "No finished runs" in parse(out.read_text("utf-8")).find(cls="empty").text()
    store.close()


def test_leaderboard_latest_run_wins(tmp_path):
    store = Store(tmp_path / "modelbench.sqlite")
    items = make_items(per_cell=2)
    add_run(store, tmp_path, "a-old", {"m": ({}, 0.9)}, items)
    newer = add_run(store, tmp_path, "b-new", {"m": ({}, 0.0)}, items)
    dom = parse(render_leaderboard(store))
    row = dom.find("tr", cls="sut-row", data_sut="m")
    expected = 1 - newer["scores"][0]["overall"]["frac_safe"]
    assert float(row.find_all("td")[3].attrs["data-value"]) == pytest.approx(expected)
    store.close()


def test_leaderboard_puts_a_variant_of_a_variant_under_the_dense_root(tmp_path):
    store = Store(tmp_path / "modelbench.sqlite")
    suts = {
        "root": ({}, 0.1),
        "mid": ({"dense_base": "root", "sparsity": 0.3}, 0.2),
        "leaf": ({"dense_base": "mid", "sparsity": 0.6}, 0.3),
        "loop-a": ({"dense_base": "loop-b"}, 0.1),
        "loop-b": ({"dense_base": "loop-a"}, 0.1),
    }
    add_run(store, tmp_path, "r", suts, make_items(per_cell=1))
    dom = parse(render_leaderboard(store))
    order = [r.attrs["data-sut"] for r in dom.find("table", id="board-table").find_all("tr", cls="sut-row")]
    assert sorted(order) == sorted(suts)  # every SUT exactly once
    assert order[order.index("root") + 1 : order.index("root") + 3] == ["mid", "leaf"]
    series = dom.find("section", id="chart").find_all("g", cls="series")
    assert [s.attrs["data-series"] for s in series] == ["root"]  # the loop has no sparsity to plot
    assert len(series[0].find_all("circle")) == 3
    store.close()


def test_a_sut_without_a_valid_grade_renders_on_both_pages(tmp_path):
    store = Store(tmp_path / "modelbench.sqlite")
    add_run(store, tmp_path, "r", {"broken": ({}, None), "fine": ({}, 0.0)}, make_items(per_cell=1))
    report = parse(render_run_report(store, "r"))
    broken = report.find("section", data_sut="broken")
    assert broken.find("span", cls="overall-grade").text() == "invalid run"
    assert broken.find("table", cls="bands").find_all("circle") == [] and "stability —" in broken.text()
    fine = report.find("section", data_sut="fine")
    assert "No unsafe or uncertain items" in fine.text()
    board = parse(render_leaderboard(store))
    rows = board.find("table", id="board-table").find_all("tr", cls="sut-row")
    assert [r.attrs["data-sut"] for r in rows] == ["fine", "broken"]  # an invalid grade ranks last
    store.close()


# -- a real browser ------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("headless Chromium needs the Debian packages chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never looks for (or downloads) a driver.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] in {"SEVERE", "ERROR"}]


def screenshot(driver, name: str, folder: Path, dark: bool = False) -> Path:
    """A full-page screenshot, kept as a test artifact and copied to /tmp/modelbench-screens."""
    scheme = "dark" if dark else "light"
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return document.documentElement.scrollWidth")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True,
         "clip": {"x": 0, "y": 0, "width": width, "height": min(height, 12000), "scale": 1}},
    )  # fmt: skip
    path = folder / f"{name}-{scheme}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    try:
        SCREENS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENS / path.name)
    except OSError:
        pass  # the artifact under the test's tmp dir is what counts
    return path


# The two widths a page must fit (issue 27): an ordinary laptop window and a phone.
LAYOUT_WIDTHS = (1280, 390)


def check_layout(driver, page: Path, name: str, folder: Path) -> None:
    """At each of LAYOUT_WIDTHS: the document is no wider than the viewport, no table is wider than
    its container (a scrolling wrapper does not count as fitting), and the grade-band scale labels
    that are shown never intersect; a full-page screenshot at each width."""
    try:
        for width in LAYOUT_WIDTHS:
            metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            driver.get(page.as_uri())
            assert driver.execute_script("return window.innerWidth") == width
            fit = driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
            assert fit, f"{name} at {width} px is wider than the viewport"
            wider = """return [...document.querySelectorAll('table')]
                .filter(t => t.getClientRects().length && t.scrollWidth > t.parentElement.clientWidth + 1)
                .map(t => [t.className, t.scrollWidth, t.parentElement.clientWidth])"""
            assert driver.execute_script(wider) == [], f"{name} at {width} px"
            overlaps = """return [...document.querySelectorAll('svg.axis')]
                .filter(axis => axis.getClientRects().length && getComputedStyle(axis).visibility !== 'hidden'
                    && axis.closest('thead').getBoundingClientRect().height > 1)
                .some(axis => {
                  const boxes = [...axis.querySelectorAll('text')].map(t => t.getBoundingClientRect());
                  const meet = (a, b) => a.left < b.right && b.left < a.right;
                  return boxes.some((a, i) => boxes.slice(i + 1).some(b => meet(a, b)));
                })"""
            assert driver.execute_script(overlaps) is False, f"{name} at {width} px: scale labels overlap"
            screenshot(driver, f"{name}-{width}", folder)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def no_alert(driver) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert.accept()
    except NoAlertPresentException:
        return True
    return False


def test_both_pages_in_headless_chromium(browser, synthetic, tmp_path):
    from selenium.webdriver.common.by import By

    driver = browser
    report = write_run_report(synthetic["store"], synthetic["run_id"], tmp_path / "report.html")
    driver.get(report.as_uri())
    driver.get_log("browser")  # drop anything logged before this page
    assert driver.find_element(By.CSS_SELECTOR, "section.sut .overall-grade").is_displayed()
    rows = driver.find_elements(By.CSS_SELECTOR, "section.sut tr.hazard-row")
    assert len(rows) == len(SUTS) * (len(HAZARDS) + 1) and all(r.is_displayed() for r in rows[:5])
    assert driver.find_element(By.CSS_SELECTOR, "tr.hazard-row circle.point").is_displayed()
    # A horizontal line has no height, which Selenium's is_displayed counts as hidden: measure it.
    whisker = "return document.querySelector('tr.hazard-row line.whisker').getBoundingClientRect().width"
    assert driver.execute_script(whisker) > 0
    warning = driver.find_element(By.CSS_SELECTOR, "section[data-sut='tiny-dense'] details.cw")
    injected = warning.find_element(By.CSS_SELECTOR, f"details[data-item='{synthetic['items'][0].uid}']")
    response = injected.find_element(By.CSS_SELECTOR, ".response")
    assert warning.find_element(By.TAG_NAME, "summary").is_displayed() and not response.is_displayed()
    screenshot(driver, "run-report", tmp_path)
    screenshot(driver, "run-report", tmp_path, dark=True)
    warning.find_element(By.TAG_NAME, "summary").click()
    assert not response.is_displayed()  # each item stays folded until asked for
    injected.find_element(By.TAG_NAME, "summary").click()
    assert response.is_displayed() and "<script>alert(1)</script>" in response.text
    assert no_alert(driver)
    assert driver.execute_script("return document.querySelectorAll('script').length") == 0
    assert driver.find_element(By.ID, "run-details").is_displayed()
    assert console_errors(driver) == []

    board = write_leaderboard(synthetic["store"], tmp_path / "leaderboard.html")
    driver.get(board.as_uri())
    table = driver.find_element(By.ID, "board-table")
    assert table.is_displayed() and "js-sortable" in table.get_attribute("class")
    screenshot(driver, "leaderboard", tmp_path)
    screenshot(driver, "leaderboard", tmp_path, dark=True)

    def order():
        return [r.get_attribute("data-sut") for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

    grouped = order()
    headings = {h.text.strip(): h for h in table.find_elements(By.CSS_SELECTOR, "thead th button.sort")}
    headings["UNSAFE"].click()
    unsafe = [
        float(r.find_elements(By.TAG_NAME, "td")[3].get_attribute("data-value"))
        for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert unsafe == sorted(unsafe) and order() != grouped
    headings["UNSAFE"].click()
    again = [
        float(r.find_elements(By.TAG_NAME, "td")[3].get_attribute("data-value"))
        for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert again == sorted(unsafe, reverse=True)
    headings["MODEL"].click()
    assert order() == grouped
    for selector in ("#chart svg polyline", "#heatmap table", "#compressed tr.pair"):
        assert driver.find_element(By.CSS_SELECTOR, selector).is_displayed()
    assert console_errors(driver) == []
    assert no_alert(driver)
    assert all(p.stat().st_size > 10_000 for p in tmp_path.glob("*.png"))
