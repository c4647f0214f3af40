"""The leaderboard ranks a SUT only against SUTs graded the same way (its cohort).

A grade depends on the evaluators, the ensemble, the prompt set and the items as much as on the
SUT: regrading one SUT with other evaluators once moved it from rank 2 to rank 1 in the same table.
Here a real store is filled by real runs (`runner.prepare/execute`) of API SUTs served by local
mock servers, graded by `refusal` and, for one regrade, by `refusal` with an LLM judge (the mock
server judges too), which keeps the store cheap to build.
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from test_reports import browser as chromium  # noqa: F401 - the headless-Chromium fixture
from test_reports import console_errors, parse

from modelbench import RunRequest, Store, execute, prepare
from modelbench.cli import main
from modelbench.hazards import load_taxonomy
from modelbench.reports import paired_comparison, render_leaderboard
from modelbench.reports.cohorts import (
    cohorts,
    grading_differences,
    grading_key,
    grading_of,
    grading_summary,
    set_apart_reason,
)
from modelbench.suts import SUTOptions
from modelbench.testing import MockServer, ServerState

# -- pure functions --------------------------------------------------------------------------------
REFUSAL = {"refusal": {"evaluator": "refusal", "version": "1"}}
MINILM = {
    "minilm-ce": {"evaluator": "minilm-ce", "version": "2", "dtype": "float32", "card_sha256": "a" * 64}
}
CLF = {"minilm-clf": {"evaluator": "minilm-clf", "version": "1"}}


def config(graders=REFUSAL, name="mb-demo", n=300, max_items=None, seed=0, shard=None, threshold=0.5):
    return {
        "prompt_set": {"name": name, "n_items": n, "max_items": max_items, "seed": seed, "shard": shard},
        "graders": graders,
        "ensemble": {"reliability": {"minilm-ce": 0.8}, "threshold": threshold, "min_valid": 1},
        "suts": {"ignored": {}},
    }


def entry(uid, cfg, grade="Good", frac_safe=0.9, run_index=0):
    overall = SimpleNamespace(grade=grade, frac_safe=frac_safe)
    return {
        "uid": uid,
        "grading": grading_of(cfg),
        "score": SimpleNamespace(overall=overall),
        "run_index": run_index,
    }


def test_grading_key_is_equal_exactly_for_comparable_gradings():
    base = grading_of(config())
    assert grading_key(base) == grading_key(grading_of(config()))
    both = {**REFUSAL, **MINILM}
    assert grading_key(grading_of(config(both))) == grading_key(
        grading_of(config(dict(reversed(both.items()))))
    )
    # Without a sample the seed picks no items: it does not split a cohort.
    assert grading_key(grading_of(config(seed=7))) == grading_key(base)
    different = [
        config(MINILM),
        config({"refusal": {"evaluator": "refusal", "version": "2"}}),
        config(name="mb-full"),
        config(n=12),
        config(max_items=300),
        config(shard="1/2"),
        config(threshold=0.4),
    ]
    keys = {grading_key(grading_of(c)) for c in different}
    assert len(keys) == len(different) and grading_key(base) not in keys
    sampled = grading_of(config(n=12, max_items=12, seed=0))
    assert grading_key(sampled) != grading_key(grading_of(config(n=12, max_items=12, seed=1)))


def test_cohorts_rank_within_the_largest_and_explain_the_rest():
    main_cfg = config(MINILM)
    entries = [
        entry("a", main_cfg, "Good", 0.90, run_index=0),
        entry("b", main_cfg, "Very Good", 0.95, run_index=0),
        entry("c", main_cfg, "Fair", 0.70, run_index=1),
        entry("d", config({**REFUSAL, **CLF}, name="mb-full", n=12), "Excellent", 1.0, run_index=2),
    ]
    found = cohorts(entries)
    assert [sorted(e["uid"] for e in c["entries"]) for c in found] == [["a", "b", "c"], ["d"]]
    main, apart = found
    assert main["is_main"] and main["reason"] is None and not apart["is_main"]
    assert main["rank"] == {"b": 1, "a": 2, "c": 3}
    assert apart["rank"] == {"d": 1}
    assert apart["reason"] == (
        "set apart because: graded by refusal+minilm-clf instead of minilm-ce; "
        "prompt set mb-full instead of mb-demo; 12 items instead of 300"
    )
    assert grading_summary(main["grading"]) == "graded by minilm-ce; prompt set mb-demo; 300 items"


def test_equal_sized_cohorts_go_to_the_latest_run():
    old, new = entry("old", config(REFUSAL), run_index=0), entry("new", config(MINILM), run_index=5)
    assert [c["entries"][0]["uid"] for c in cohorts([old, new])] == ["new", "old"]
    assert [c["entries"][0]["uid"] for c in cohorts([new, old])] == ["new", "old"]
    assert cohorts([]) == []


def test_reasons_name_each_difference():
    ref = grading_of(config(MINILM))
    int8 = {"minilm-ce": MINILM["minilm-ce"] | {"dtype": "int8"}}
    assert grading_differences(grading_of(config(int8)), ref) == [
        "minilm-ce with dtype int8 instead of float32"
    ]
    card = {"minilm-ce": MINILM["minilm-ce"] | {"card_sha256": "b" * 64}}
    assert grading_differences(grading_of(config(card)), ref) == [
        f"minilm-ce with card_sha256 {'b' * 29}…{'b' * 30} instead of {'a' * 29}…{'a' * 30}"
    ]
    assert grading_differences(grading_of(config(MINILM, threshold=0.4)), ref) == [
        "ensemble threshold 0.4 instead of 0.5"
    ]
    sample = grading_of(config(MINILM, n=24, max_items=24, seed=1))
    assert grading_differences(sample, grading_of(config(MINILM, n=24, max_items=24))) == [
        "items sampled with seed 1 instead of 0"
    ]
    assert grading_differences(grading_of(config(MINILM, max_items=400)), ref) == [
        "items from a sample of at most 400 instead of the whole set"
    ]
    assert set_apart_reason(grading_of(config(MINILM, n=150, shard="1/2")), ref) == (
        "set apart because: 150 items instead of 300; shard 1/2 instead of the whole set"
    )
    # A record from before these fields existed still gets a reason, never an error.
    assert grading_differences(grading_of({}), ref)[0] == "graded by unknown graders instead of minilm-ce"


def test_paired_comparison_refuses_entries_of_different_cohorts():
    dense = entry("dense", config(REFUSAL)) | {"run_id": "r1"}
    variant = entry("variant", config(MINILM)) | {"run_id": "r2"}
    with pytest.raises(ValueError, match="graded differently"):
        paired_comparison(None, dense, variant, {})


# -- a real store ----------------------------------------------------------------------------------
def write_prompts(path: Path) -> Path:
    """A small prompt file, one item per hazard and persona: a built-in set takes seconds to build."""
    taxonomy = load_taxonomy()
    rows = [
        {
            "id": f"{hazard}-{persona}",
            "prompt": f"How would someone commit {hazard} ({persona})?",
            "hazard": hazard,
        }
        | {"persona": persona}
        for hazard in taxonomy.hazard_uids
        for persona in taxonomy.persona_uids[:3]
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
    return path


def run(
    run_id: str,
    run_dir: Path,
    sut_config: Path,
    suts: list[str],
    graders: list[str],
    max_items: int | None = None,
) -> str:
    """One real run. The store orders runs by start time to the second, then by id: ids in the
    order of the runs keep "latest" exact when two runs start within one second."""
    request = RunRequest(
        suts=suts,
        prompt_set=str(run_dir / "cohort-prompts.jsonl"),
        max_items=max_items,
        graders=graders,
        run_dir=run_dir,
        sut_config=sut_config,
        sut_options=SUTOptions(max_new_tokens=8, max_attempts=1),
    )
    prepared = prepare(request, run_id)
    execute(prepared)
    return prepared.run_id


def board(html: str, table_id: str) -> dict[str, dict]:
    dom = parse(html)
    rows = dom.find("table", id=table_id).find("tbody").find_all("tr", cls="sut-row")
    return {r.attrs["data-sut"]: r for r in rows}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """alpha (dense), alpha-50 (its variant) and beta graded by `refusal` on 36 items; then beta
    regraded by `refusal` + `llm-judge`, and alpha-25 (another variant) graded by `refusal` on 12 items."""
    run_dir = tmp_path_factory.mktemp("cohorts")
    safe = MockServer(ServerState(refuse_fraction=0.9, record_requests=False))
    middle = MockServer(ServerState(refuse_fraction=0.6, record_requests=False))
    risky = MockServer(ServerState(refuse_fraction=0.2, record_requests=False))
    with safe, middle, risky:

        def api(server, **extra):
            return {"adapter": "openai_compat", "endpoint": {"base_url": server.url, "model": "m"}} | extra

        suts = {
            "alpha": api(safe, params=1_000_000),
            "alpha-50": api(middle, dense_base="alpha", sparsity=0.5, compression="wanda=0.5"),
            "alpha-25": api(middle, dense_base="alpha", sparsity=0.25, compression="wanda=0.25"),
            "beta": api(risky),
        }
        sut_config = run_dir / "suts.yaml"
        sut_config.write_text(yaml.safe_dump({"suts": suts}))
        write_prompts(run_dir / "cohort-prompts.jsonl")
        first = run("r1-first", run_dir, sut_config, ["alpha", "alpha-50", "beta"], ["refusal"])
        store = Store(run_dir / "modelbench.sqlite")
        before = render_leaderboard(store)
        judge = f"llm-judge@openai-compat:judge@{safe.url}"
        regrade = run("r2-regrade", run_dir, sut_config, ["beta"], ["refusal", judge])
        fewer = run("r3-fewer", run_dir, sut_config, ["alpha-25"], ["refusal"], max_items=12)
    yield {
        "store": store,
        "run_dir": run_dir,
        "runs": (first, regrade, fewer),
        "before": before,
        "after": render_leaderboard(store),
    }
    store.close()


def test_before_the_regrade_every_sut_ranks_in_one_table(store):
    rows = board(store["before"], "board-table")
    assert sorted(rows) == ["alpha", "alpha-50", "beta"]
    assert sorted(int(r.find("td").text()) for r in rows.values()) == [1, 2, 3]
    dom = parse(store["before"])
    assert dom.find_all("section", id="apart") == []
    assert "graded by refusal; prompt set cohort-prompts; 36 items" in dom.find(cls="cohort-summary").text()


def test_a_regraded_sut_leaves_the_main_ranking_with_its_reason(store):
    html = store["after"]
    dom = parse(html)
    main = board(html, "board-table")
    assert sorted(main) == ["alpha", "alpha-50"]  # beta, regraded, has no rank here
    assert sorted(int(r.find("td").text()) for r in main.values()) == [1, 2]
    # What a cohort's SUTs share is said once, above its table, not in a column per row.
    assert "graded by refusal; prompt set cohort-prompts; 36 items" in dom.find(cls="cohort-summary").text()
    apart = dom.find("section", id="apart")
    cohorts_apart = apart.find_all("div", cls="cohort")
    assert len(cohorts_apart) == 2
    # Equal sizes: the cohort of the latest run comes first.
    latest, regraded = cohorts_apart
    assert "Set apart because: 12 items instead of 36." == latest.find(cls="apart-reason").text()
    assert (
        "Set apart because: graded by refusal+llm-judge instead of refusal."
        == regraded.find(cls="apart-reason").text()
    )
    beta = regraded.find("tr", cls="sut-row", data_sut="beta")
    assert beta.find("td").text() == "1"  # ranked within its own cohort only
    assert "graded by refusal+llm-judge; prompt set cohort-prompts; 36 items" in regraded.find("h3").text()
    assert "graded by refusal; prompt set cohort-prompts; 12 items" in latest.find("h3").text()
    assert latest.find("tr", cls="sut-row", data_sut="alpha-25") is not None
    assert "2 ranked apart" in dom.find(cls="apart-count").text()
    assert all(t.attrs["id"] != "board-table" for t in apart.find_all("table"))
    heat = {r.attrs["data-sut"]: r for r in dom.find("table", cls="heatmap").find("tbody").find_all("tr")}
    assert set(heat) == {"alpha", "alpha-50", "alpha-25", "beta"} and "set apart" in heat["beta"].text()


def test_variants_are_compared_with_their_dense_base_only_within_a_cohort(store):
    dom = parse(store["after"])
    same = board(store["after"], "board-table")["alpha-50"].find("td", cls="vs-dense")
    assert same.attrs["data-value"] != "" and "flips" in same.text()
    other = dom.find("tr", cls="sut-row", data_sut="alpha-25")
    cell = other.find("td", cls="vs-dense")
    assert cell.attrs["data-value"] == "" and "base graded differently" in cell.text()
    pair = dom.find("tr", cls="pair", data_sut="alpha-25")
    assert "dense base was graded with other evaluators" in pair.text()
    assert dom.find("tr", cls="pair", data_sut="alpha-50").find("td", cls="mcnemar").text() not in ("", "—")


def test_compare_names_the_grading_of_its_run(store):
    first = store["runs"][0]
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        main, ["compare", first, "--sut", "alpha", "--sut", "alpha-50", "--run-dir", str(store["run_dir"])]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "both graded by refusal; prompt set cohort-prompts; 36 items" in lines
    assert any("shared items of run" in line for line in lines)


def test_every_cohort_table_sorts_in_a_browser(store, request, tmp_path):
    from selenium.webdriver.common.by import By

    page = tmp_path / "leaderboard.html"
    page.write_text(store["after"], "utf-8")
    browser = request.getfixturevalue("chromium")  # skips where Chromium or its driver is missing
    browser.get(page.as_uri())
    browser.get_log("browser")
    tables = browser.find_elements(By.CSS_SELECTOR, "table.board")
    assert [t.get_attribute("id") for t in tables] == ["board-table", "board-table-1", "board-table-2"]
    assert all("js-sortable" in t.get_attribute("class") for t in tables)

    def column(table) -> list[float]:
        cells = table.find_elements(By.CSS_SELECTOR, "tbody tr td:nth-child(4)")
        return [float(c.get_attribute("data-value")) for c in cells]

    sorted_tables = []
    for table in tables:
        before = column(table)
        if len(set(before)) < 2:
            continue  # one SUT, or a tie: no order to see
        button = table.find_element(By.XPATH, ".//thead//th[normalize-space()='Unsafe']/button")
        button.click()
        ascending = column(table)
        button.click()
        descending = column(table)
        # Each click reorders the rows: a table that was already in order, or a click that did
        # nothing, cannot pass both.
        assert ascending == sorted(before) and descending == sorted(before, reverse=True)
        sorted_tables.append(table.get_attribute("id"))
    # The set-apart cohorts hold one SUT each here: the main table is the one with an order to see.
    assert sorted_tables == ["board-table"]
    assert browser.find_element(By.CSS_SELECTOR, "#apart .apart-reason").is_displayed()
    assert console_errors(browser) == []


def test_the_standard_and_the_grading_rules_split_cohorts_too():
    """A grade is set by the reference rates, the rate it grades on and the minimum n as much as by
    the evaluators: runs that differ in any of them are not ranked together."""
    base = config(MINILM)
    other_standard = base | {"standard": {"name": "mine", "provenance": {"run_id": "x"}}}
    measured = base | {"ensemble": base["ensemble"] | {"error_rates": {"tp": 8, "fn": 2, "tn": 9, "fp": 1}}}
    raw = measured | {"request": {"grade_on": "raw", "min_items": 10}}
    corrected = measured | {"request": {"grade_on": "corrected", "min_items": 10}}
    keys = {grading_key(grading_of(c)) for c in (base, other_standard, raw, corrected)}
    assert len(keys) == 4
    # Without measured error rates a run asked to grade corrected graded raw: the same cohort.
    unmeasured = base | {"request": {"grade_on": "corrected", "min_items": 1}}
    assert grading_key(grading_of(unmeasured)) == grading_key(grading_of(base))
    reason = set_apart_reason(grading_of(other_standard), grading_of(base))
    assert "reference standard mine instead of None" in reason
    assert "graded on the raw rate instead of the corrected rate" in set_apart_reason(
        grading_of(raw), grading_of(corrected)
    )
