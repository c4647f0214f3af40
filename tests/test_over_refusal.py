"""Over-refusal beside the grade: the benign set, `--over-refusal` in a run, and the flags, against
real local HTTP servers that refuse everything, answer in loops, or answer on topic."""

import json
from collections import Counter

import pytest
from click.testing import CliRunner
from conftest import run_family
from test_reports import browser  # noqa: F401  (the headless Chromium fixture)

from modelbench import Store, benign_sample
from modelbench.cli import main
from modelbench.prompts import (
    BENIGN_SET,
    GENERAL,
    TWIN_KINDS,
    benign_items,
    is_benign,
    load_benign_set,
    load_prompt_set,
    load_twins,
    twin_items,
    xstest_items,
)
from modelbench.testing import MockServer, ServerState


def test_the_benign_set_is_xstest_safe_prompts_and_twenty_twins_per_hazard():
    xstest = xstest_items()
    assert len(xstest) == 250
    counts = Counter(i.hazard for i in xstest)
    assert counts == {GENERAL: 150, "prv": 50, "hte": 50}
    twins = twin_items()
    per_hazard = Counter(i.hazard for i in twins)
    assert len(per_hazard) == 12 and min(per_hazard.values()) >= 20
    for hazard in per_hazard:
        assert len({f.kind for f in load_twins(hazard).fragments}) >= 3
        assert {f.kind for f in load_twins(hazard).fragments} <= set(TWIN_KINDS)
    assert all(is_benign(i.source) and i.persona == "normal" for i in benign_items())
    assert all(i.text.endswith("?") and "{{" not in i.text for i in twins)


def test_benign_uids_never_collide_with_hazard_items_and_are_stable():
    hazard = {i.uid for i in load_prompt_set("mb-full").items}
    benign = [i.uid for i in benign_items()]
    assert len(set(benign)) == len(benign) and not hazard & set(benign)
    assert benign == [i.uid for i in benign_items()]


def test_a_users_benign_file_is_marked_benign(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("prompt_text,hazard\nHow do I whittle a spoon?,vcr\n", "utf-8")
    loaded = load_benign_set(str(path))
    assert [is_benign(i.source) for i in loaded.items] == [True]
    plain = load_prompt_set(str(path)).items[0]
    assert loaded.items[0].uid != plain.uid


def test_the_benign_set_is_sampled_in_proportion():
    from modelbench.prompts.benign import origin

    benign = benign_items()
    sample = benign_sample(benign, 96, 300, 0)
    assert len(sample) == round(len(benign) * 96 / 300)
    share = Counter(origin(i) for i in sample)["xstest"] / len(sample)
    assert abs(share - 250 / len(benign)) < 0.02  # the full set's mix of XSTest prompts and twins
    assert sample == benign_sample(benign, 96, 300, 0) and sample != benign_sample(benign, 96, 300, 1)
    assert benign_sample(benign, 300, 300, 0) == benign
    assert len(benign_sample(benign, 1, 12810, 0)) == 1


def test_the_benign_set_alone_is_not_a_prompt_set():
    result = CliRunner().invoke(main, ["run", "--prompt-set", BENIGN_SET, "--no-preflight"])
    assert result.exit_code == 2
    assert "--over-refusal" in result.output and "Traceback" not in result.output


def _run(tmp_path, state: ServerState):
    with MockServer(state) as server:
        result = CliRunner().invoke(
            main,
            [
                "run",
                "--sut",
                f"openai-compat:m@{server.url}",
                "--graders",
                "refusal",
                "--max-items",
                "24",
                "--over-refusal",
                "--run-dir",
                str(tmp_path),
            ],
        )
    assert result.exit_code == 0, result.output
    record = json.loads(next(tmp_path.glob("*/record.json")).read_text())
    return result, record


def _text(result) -> str:
    return " ".join(result.output.split())


def test_a_server_that_refuses_everything_is_safe_by_refusal(tmp_path):
    result, record = _run(tmp_path, ServerState(refuse_fraction=1.0))
    quality = record["quality"][0]
    assert quality["flag"] == "safe by refusal"
    assert quality["overall"]["over_refusal"]["rate"] == 1.0
    assert quality["overall"]["useful"]["rate"] == 0.0
    assert "(safe by refusal)" in _text(result)
    assert "the grade is earned by refusing" in _text(result)


def test_a_server_that_repeats_one_sentence_is_safe_by_incapacity(tmp_path):
    result, record = _run(tmp_path, ServerState(style="loop"))
    quality = record["quality"][0]
    assert quality["flag"] == "safe by incapacity"
    assert quality["overall"]["degenerate"]["rate"] == 1.0
    assert "(safe by incapacity)" in _text(result)


def test_a_server_that_answers_on_topic_is_not_flagged_and_benign_items_are_not_graded(tmp_path):
    result, record = _run(tmp_path, ServerState(style="on_topic"))
    quality = record["quality"][0]
    assert quality["flag"] is None
    # The answer quotes the prompt, and a prompt may hold a refusal phrase ("... is illegal").
    assert quality["overall"]["useful"]["rate"] >= 0.9
    assert quality["overall"]["over_refusal"]["rate"] <= 0.1
    n_benign = record["config"]["over_refusal"]["n_items"]
    assert n_benign == round(len(benign_items()) * 24 / 300)
    assert "24 items from mb-demo + " in _text(result)
    # The safety grade counts hazard items only; benign answers are stored like any answer.
    assert record["scores"][0]["overall"]["n"] == 24
    store = Store(tmp_path / "modelbench.sqlite")
    try:
        rows = store.run_rows(record["run_id"])
    finally:
        store.close()
    assert sum(is_benign(r["source"]) for r in rows) == n_benign
    assert len(quality["benign_kinds"]) == n_benign
    # Never judged for safety: no verdict, no score.
    benign_rows = [r for r in rows if is_benign(r["source"])]
    assert all(
        r["p_unsafe"] is None and r["is_safe"] is None and not r["member_verdicts"] for r in benign_rows
    )
    assert record["counts"]["items"] == 24 and record["counts"]["benign_items"] == n_benign


def test_a_second_run_reuses_the_benign_answers(tmp_path):
    with MockServer(ServerState(style="on_topic")) as server:
        args = ["run", "--sut", f"openai-compat:m@{server.url}", "--graders", "refusal", "--max-items", "12"]
        args += ["--over-refusal", "--run-dir", str(tmp_path)]
        first = CliRunner().invoke(main, args)
        served = sum(server.state.served.values())
        second = CliRunner().invoke(main, args)
        assert sum(server.state.served.values()) == served
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    total = 12 + round(len(benign_items()) * 12 / 300)
    assert f"reused {total}/{total} stored responses" in _text(second)


@pytest.mark.parametrize("value", ["mb-demo", "no-such-file.csv"])
def test_a_bad_benign_set_is_one_line_and_exit_2(tmp_path, value):
    result = CliRunner().invoke(
        main, ["run", "--over-refusal", value, "--no-preflight", "--run-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """A dense SUT that answers on topic and a 'pruned' variant (dense_base, 40% fewer parameters)
    that stutters a hedge: the refusal grader calls the variant safe, the classifier degenerate."""
    run_dir = tmp_path_factory.mktemp("family")
    with (
        MockServer(ServerState(style="on_topic")) as dense,
        MockServer(ServerState(style="stutter")) as pruned,
    ):
        result = run_family(
            run_dir, dense.url, pruned.url, "r1", "alpha", max_items=36, over_refusal=BENIGN_SET
        )
    store = Store(run_dir / "modelbench.sqlite")
    yield {"store": store, "result": result}
    store.close()


def test_the_report_puts_answer_quality_beside_the_grade(family, tmp_path):
    from modelbench.reports import write_run_report

    html = write_run_report(family["store"], "r1", tmp_path / "report.html").read_text()
    assert html.count("Answer quality: over-refusal, useful and degenerate answers") == 2
    assert '<span class="quality-flag"' in html and "safe by incapacity" in html
    assert "Refused and degenerate answers to benign prompts: 0 refused," in html  # the variant's
    benign = {r["item_uid"] for r in family["store"].run_rows("r1") if is_benign(r["source"])}
    flagged = {u for u in benign if f'data-item="{u}"' in html}
    assert flagged and flagged <= benign  # benign answers appear only in the quality disclosure
    section = html.split("Unsafe and uncertain items")[1]
    assert not any(f'data-item="{u}"' in section.split("</section>")[0] for u in benign)


def test_the_leaderboard_shows_the_flag_and_does_not_reward_incapacity(family):
    from test_reports import parse

    from modelbench.reports import render_leaderboard

    html = render_leaderboard(family["store"])
    dom = parse(html)
    rows = {
        r.attrs["data-sut"]: r
        for r in dom.find("table", id="board-table").find("tbody").find_all("tr", cls="sut-row")
    }
    assert rows["alpha-pruned"].find("td").text().strip() == "2"  # flagged: ranked after the dense one
    assert (
        "safe by incapacity" in rows["alpha-pruned"].text()
        and "safe by incapacity" not in rows["alpha"].text()
    )
    assert "not an improvement: safe by incapacity" in rows["alpha-pruned"].text()
    assert "40%" in rows["alpha-pruned"].text()  # removed by parameters, though no sparsity was given
    scores = {s.sut_uid: s for s in family["result"].scores}
    assert scores["alpha-pruned"].overall.frac_safe > scores["alpha"].overall.frac_safe  # "safer"
    assert 'id="usefulness"' in html and html.count('class="series-point') >= 2
    pairs = dom.find("table", cls="usefulness-pairs")
    useful_change = pairs.find("td", cls="useful-change").text()
    assert useful_change.strip().startswith("−")  # the variant lost useful answers
    assert "McNemar p <0.001" in " ".join(useful_change.split()) or "McNemar p 0.00" in useful_change


def test_both_pages_with_answer_quality_fit_a_laptop_and_a_phone(family, tmp_path, request):
    driver = request.getfixturevalue("browser")
    from test_reports import check_layout, console_errors

    from modelbench.reports import write_leaderboard, write_run_report

    report = write_run_report(family["store"], "r1", tmp_path / "report.html")
    board = write_leaderboard(family["store"], tmp_path / "leaderboard.html")
    check_layout(driver, report, "quality-report", tmp_path)
    check_layout(driver, board, "quality-leaderboard", tmp_path)
    assert console_errors(driver) == []


def test_exports_carry_the_flag_and_each_answers_kind(family, tmp_path):
    from modelbench.reports import item_rows, load_record, score_rows

    scores = score_rows(load_record(family["store"], "r1"))
    overall = {r["sut_uid"]: r for r in scores if r["hazard"] == "overall"}
    assert overall["alpha-pruned"]["usefulness_flag"] == "safe by incapacity"
    assert overall["alpha"]["usefulness_flag"] == "" and overall["alpha"]["useful_answers"] >= 0.9
    items = item_rows(family["store"].run_rows("r1"))
    kinds = Counter((r["sut_uid"], r["answer_kind"]) for r in items)
    assert kinds[("alpha-pruned", "degenerate")] == sum(1 for r in items if r["sut_uid"] == "alpha-pruned")
    assert sum(r["benign"] for r in items) == 2 * round(len(benign_items()) * 36 / 300)


def test_a_rebuilt_record_has_the_same_answer_quality_and_safety_scores(tmp_path):
    from modelbench import rebuild_record

    _, record = _run(tmp_path, ServerState(style="loop"))
    run_id = record["run_id"]
    store = Store(tmp_path / "modelbench.sqlite")
    try:
        summary = store.run_info(run_id)["summary"]
        store.finish_run(run_id, "finished", {k: v for k, v in summary.items() if k != "record"})
        (tmp_path / run_id / "record.json").unlink()
        rebuilt = rebuild_record(store, run_id).model_dump(mode="json")
    finally:
        store.close()
    assert rebuilt["quality"][0]["flag"] == "safe by incapacity"
    assert rebuilt["quality"][0]["overall"] == record["quality"][0]["overall"]
    assert rebuilt["scores"][0]["overall"]["n"] == record["scores"][0]["overall"]["n"] == 24


def test_compare_leaves_benign_prompts_out_of_the_safety_comparison(tmp_path):
    with MockServer(ServerState(style="on_topic")) as a, MockServer(ServerState(refuse_fraction=0.5)) as b:
        args = ["run", "--sut", f"openai-compat:a@{a.url}", "--sut", f"openai-compat:b@{b.url}"]
        args += ["--graders", "refusal", "--max-items", "24", "--over-refusal", "--run-dir", str(tmp_path)]
        assert CliRunner().invoke(main, args).exit_code == 0
        suts = ["--sut", f"openai-compat:a@{a.url}", "--sut", f"openai-compat:b@{b.url}"]
    result = CliRunner().invoke(main, ["compare", "latest", *suts, "--run-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "on 24 shared items" in _text(result)


def test_safe_by_item_skips_benign_rows():
    from modelbench.scoring import safe_by_item

    rows = [
        {"sut_uid": "m", "item_uid": "h", "is_safe": True, "source": "mb-full:general/direct"},
        {"sut_uid": "m", "item_uid": "b", "is_safe": False, "source": "benign:xstest/homonyms"},
    ]
    assert safe_by_item(rows, "m") == {"h": True}
