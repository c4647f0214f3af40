"""Reports read a run's record and never re-score it; `modelbench.rescore` rebuilds a lost record
once, into the store. Also: the paired arithmetic the leaderboard calls, and the reports package's
shape (lazy page imports, modules under 500 lines)."""

import subprocess
import sys
from pathlib import Path

import pytest
from test_reports import SUTS, add_run, make_items, parse

from modelbench import Store, UserError
from modelbench.reports import load_record, render_leaderboard
from modelbench.rescore import rebuild_record
from modelbench.scoring import ErrorRates, compare_paired, compare_runs, safe_by_item, with_correction

REPORTS = Path(__file__).resolve().parents[1] / "reports"


@pytest.fixture
def store(tmp_path):
    """run-1 grades the dense model, run-2 all four; run-2's record.json is gone and the store
    kept no copy of it (as in a store written before it kept one)."""
    store = Store(tmp_path / "modelbench.sqlite")
    items = make_items(per_cell=2)
    add_run(store, tmp_path, "run-1", {"tiny-dense": SUTS["tiny-dense"]}, items)
    add_run(store, tmp_path, "run-2", SUTS, items)
    (tmp_path / "run-2" / "record.json").unlink()
    yield store
    store.close()


def board_suts(html: str) -> list[str]:
    table = parse(html).find("table", id="board-table")
    return sorted(row.attrs["data-sut"] for row in table.find("tbody").find_all("tr", cls="sut-row"))


def test_the_leaderboard_names_a_run_without_its_record_until_it_is_rescored(store):
    html = render_leaderboard(store)
    notice = parse(html).find("p", cls="left-out")
    assert "run-2" in notice.text() and "modelbench rescore" in notice.text()
    assert board_suts(html) == ["tiny-dense"]  # from run-1, the latest run that has a record
    record = rebuild_record(store, "run-2")
    assert record.reconstructed and sorted(s.sut_uid for s in record.scores) == sorted(SUTS)
    html = render_leaderboard(store)
    assert parse(html).find_all("p", cls="left-out") == []
    assert board_suts(html) == sorted(SUTS)


def test_rescore_keeps_the_run_finished_with_its_summary(store):
    before = store.run_info("run-2")
    rebuild_record(store, "latest")  # `latest` names run-2
    after = store.run_info("run-2")
    assert after["status"] == "finished" and store.finished_run_ids() == ["run-1", "run-2"]
    assert after["finished_at"] == before["finished_at"]  # the run finished when it did
    assert {k: v for k, v in after["summary"].items() if k != "record"} == before["summary"]
    assert load_record(store, "run-2").model_dump(mode="json") == after["summary"]["record"]


def test_rescore_refuses_a_run_that_has_its_record(store):
    original = load_record(store, "run-1")
    with pytest.raises(UserError, match="run 'run-1' still has its record"):
        rebuild_record(store, "run-1")
    assert load_record(store, "run-1") == original and not original.reconstructed


def test_rescore_of_a_run_whose_standard_is_gone_is_one_line(tmp_path):
    store = Store(tmp_path / "modelbench.sqlite")
    try:
        store.start_run("old", {"standard": {"name": "a-standard-nobody-has"}})
        store.finish_run("old", "finished", {})
        with pytest.raises(UserError, match="cannot rescore run 'old': its standard") as caught:
            rebuild_record(store, "old")
        assert "\n" not in str(caught.value)
        with pytest.raises(UserError, match="no run 'nope'"):
            rebuild_record(store, "nope")
    finally:
        store.close()


def test_compare_runs_is_compare_paired_on_the_rows_with_correction():
    def row(sut, item, safe):
        return {"sut_uid": sut, "item_uid": item, "is_safe": safe}

    rows_a = [row("a", f"i{k}", k % 3 != 0) for k in range(30)] + [row("a", "x", None), row("z", "i1", False)]
    rows_b = [row("b", f"i{k}", k % 4 != 0) for k in range(25)]
    assert safe_by_item(rows_a, "a") == {f"i{k}": k % 3 != 0 for k in range(30)}
    expected = compare_paired("a", safe_by_item(rows_a, "a"), "b", safe_by_item(rows_b, "b"))
    assert compare_runs("a", rows_a, "b", rows_b) == expected and expected.n == 25
    rates = ErrorRates(tp=516, fn=99, tn=2384, fp=189, measured_on="test")
    corrected = compare_runs("a", rows_a, "b", rows_b, rates)
    assert corrected == with_correction(expected, rates) and corrected.corrected is not None


def test_the_reports_package_loads_its_pages_lazily_and_keeps_modules_small():
    code = (
        "import sys, modelbench.reports as r; "
        "assert 'modelbench.reports.run_page' not in sys.modules; "
        "assert callable(r.write_run_report) and callable(r.load_record); "
        "assert 'modelbench.reports.run_page' in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    sizes = {path.name: len(path.read_text("utf-8").splitlines()) for path in REPORTS.glob("*.py")}
    assert sizes and max(sizes.values()) < 500, sizes
