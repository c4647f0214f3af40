"""The `modelbench` command line, end to end through click's CliRunner on a tiny local model.

A first run writes a record and fills the store; a repeat reuses every stored response and verdict
and scores identically; bad input exits 2 with one `error:` line and leaves stored work untouched.
"""

import json
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelbench.cli import main
from modelbench.graders import DEFAULT_GRADERS
from modelbench.hazards import load_taxonomy

STORE = "modelbench.sqlite"
GRADE_WORD = re.compile(r"\b(Excellent|Very Good|Good|Fair|Poor|invalid run)\b")
HAZARDS = load_taxonomy().hazard_uids


def invoke(*args: str):
    # Wide enough that rich never wraps a path, a hazard name or the `reused` line.
    return CliRunner(env={"COLUMNS": "250"}).invoke(main, [str(a) for a in args])


def run_args(model: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--sut",
        f"hf:{model}",
        "--max-items",
        "12",
        "--max-new-tokens",
        "4",
        "--run-dir",
        str(run_dir),
        *extra,
    ]


def run_id_of(output: str) -> str:
    match = re.search(r"^run (\S+): ", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def read_record(run_dir: Path, output: str) -> dict:
    path = run_dir / run_id_of(output) / "record.json"
    assert path.is_file(), f"no record at {path}\n{output}"
    return json.loads(path.read_text("utf-8"))


def store_snapshot(run_dir: Path) -> dict[str, list]:
    db = sqlite3.connect(f"file:{run_dir / STORE}?mode=ro", uri=True)
    try:
        return {
            "responses": db.execute(
                "SELECT key, outcome, text, created_at FROM responses ORDER BY key"
            ).fetchall(),
            "verdicts": db.execute("SELECT key, raw, created_at FROM verdicts ORDER BY key").fetchall(),
            "items": db.execute("SELECT uid FROM items ORDER BY uid").fetchall(),
            "runs": db.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall(),
        }
    finally:
        db.close()


@pytest.fixture(scope="module")
def first_run(tiny_llama, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "runs"
    result = invoke(*run_args(tiny_llama, run_dir))
    assert result.exit_code == 0, result.output
    return run_dir, result.output, read_record(run_dir, result.output)


# -- a run, and the same run again ----------------------------------------------------------------
def test_run_prints_table_and_writes_record(first_run):
    run_dir, output, record = first_run
    assert "Traceback" not in output
    assert "reused 0/12 stored responses" in output
    for hazard in HAZARDS:
        assert re.search(rf"^\W*{hazard}\b", output, re.MULTILINE), f"no row for {hazard}\n{output}"
    assert GRADE_WORD.search(output), output
    assert "record: " in output

    (score,) = record["scores"]
    assert len(HAZARDS) == 12
    assert [h["hazard"] for h in score["hazards"]] == HAZARDS
    assert all(h["n"] == 1 for h in score["hazards"]), score["hazards"]
    assert score["overall"]["n"] == 12
    assert GRADE_WORD.fullmatch(score["overall"]["grade"])

    counts = record["counts"]
    assert counts["items"] == 12
    assert counts["responses_new"] == 12
    assert counts["responses_reused"] == 0
    assert counts["response_errors"] == 0
    assert counts["verdicts_new"] == 12 * len(DEFAULT_GRADERS)
    assert counts["verdicts_reused"] == 0

    snapshot = store_snapshot(run_dir)
    assert len(snapshot["responses"]) == 12
    assert all(outcome == "ok" for _, outcome, _, _ in snapshot["responses"])
    assert snapshot["runs"] == [(record["run_id"], "finished")]


def test_same_run_again_reuses_everything(first_run, tiny_llama):
    run_dir, first_output, first_record = first_run
    before = store_snapshot(run_dir)

    result = invoke(*run_args(tiny_llama, run_dir))
    assert result.exit_code == 0, result.output
    verdicts = 12 * len(DEFAULT_GRADERS)
    assert f"reused 12/12 stored responses and {verdicts}/{verdicts} stored verdicts" in result.output
    record = read_record(run_dir, result.output)
    assert record["run_id"] != first_record["run_id"]

    counts = record["counts"]
    assert counts["items"] == 12
    assert counts["responses_new"] == 0
    assert counts["responses_reused"] == 12
    assert counts["verdicts_new"] == 0
    assert counts["verdicts_reused"] == 12 * len(DEFAULT_GRADERS)
    assert record["scores"][0]["hazards"] == first_record["scores"][0]["hazards"]
    assert record["scores"][0]["overall"] == first_record["scores"][0]["overall"]

    after = store_snapshot(run_dir)
    assert after["responses"] == before["responses"]
    assert after["verdicts"] == before["verdicts"]
    # The first record is still there, untouched by the second run.
    assert read_record(run_dir, first_output) == first_record


# -- bad input --------------------------------------------------------------------------------
BAD_INPUTS = {
    "unknown SUT": lambda model, tmp: ["--sut", "nope"],
    "unknown prompt set": lambda model, tmp: ["--prompt-set", "nope"],
    "run dir under a file": lambda model, tmp: ["--run-dir", str(tmp / "f" / "sub")],
    "run dir is a file": lambda model, tmp: ["--run-dir", str(tmp / "f")],
    "zero max items": lambda model, tmp: ["--max-items", "0"],
    "unknown grader": lambda model, tmp: ["--graders", "nope"],
    "missing model": lambda model, tmp: ["--sut", "hf:/does/not/exist"],
    "empty hf path": lambda model, tmp: ["--sut", "hf:"],
    "zero max new tokens": lambda model, tmp: ["--max-new-tokens", "0"],
    "zero batch size": lambda model, tmp: ["--batch-size", "0"],
    "same SUT twice": lambda model, tmp: ["--sut", f"hf:{model}", "--sut", f"hf:{model}"],
    "unknown standard": lambda model, tmp: ["--standards", "nope"],
    "missing prompt file": lambda model, tmp: ["--prompt-set", str(tmp / "missing.csv")],
}
# What each case's one line must say (a pattern): the error is this case's, not any error.
BAD_INPUT_MESSAGES = {
    "unknown SUT": r"^error: unknown SUT 'nope' \(known: .*smollm2-135m",
    "unknown prompt set": r"^error: unknown prompt set 'nope' \(built in: mb-demo, mb-full",
    "run dir under a file": r"^error: cannot create run dir .*/f/sub: Not a directory$",
    "run dir is a file": r"^error: cannot create run dir .*/f: File exists$",
    "zero max items": r"^error: --max-items must be at least 1, got 0$",
    "unknown grader": r"^error: unknown grader 'nope' \(known: refusal, minilm-ce",
    "missing model": r"^error: model not found: /does/not/exist$",
    "empty hf path": r"^error: empty path in SUT spec 'hf:' \(use hf:/path/to/model\)$",
    "zero max new tokens": r"^error: --max-new-tokens must be at least 1, got 0$",
    "zero batch size": r"^error: --batch-size must be at least 1, got 0$",
    "same SUT twice": r"^error: the same SUT is given twice",
    "unknown standard": r"^error: unknown reference standard 'nope' \(built in: ailuminate-1\.0-practice",
    "missing prompt file": r"^error: prompt file not found: .*/missing\.csv$",
}


def bad_args(name: str, model: Path, run_dir: Path, tmp: Path) -> list[str]:
    """The good command, with the options named by the case replaced."""
    override = BAD_INPUTS[name](model, tmp)
    base = dict(zip(run_args(model, run_dir)[1::2], run_args(model, run_dir)[2::2], strict=True))
    args = ["run"]
    replaced = {override[i] for i in range(0, len(override), 2)}
    for option, value in base.items():
        if option not in replaced:
            args += [option, value]
    return args + override


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_error_line_and_loses_nothing(case, first_run, tiny_llama, tmp_path):
    run_dir, _, _ = first_run
    (tmp_path / "f").write_text("a regular file\n")
    before = store_snapshot(run_dir)
    assert len(before["responses"]) == 12

    result = invoke(*bad_args(case, tiny_llama, run_dir, tmp_path))

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert re.search(BAD_INPUT_MESSAGES[case], lines[0]), result.output
    assert result.stdout == "", "the error goes to stderr alone"
    assert result.stderr.startswith("error: ")
    after = store_snapshot(run_dir)
    assert after == before, "a rejected command changed the store"


def test_bad_input_creates_no_run_dir(tiny_llama, tmp_path):
    """Input is checked before anything is written: a typo leaves no empty run dir or store."""
    run_dir = tmp_path / "fresh"
    result = invoke(*run_args(tiny_llama, run_dir, "--graders", "nope"))
    assert result.exit_code == 2, result.output
    assert not run_dir.exists()


def test_corrupt_store_is_a_user_error_and_kept(tiny_llama, tmp_path):
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    junk = b"this is not an SQLite database\n" * 100
    (run_dir / STORE).write_bytes(junk)
    result = invoke(*run_args(tiny_llama, run_dir))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().startswith("error: "), result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (run_dir / STORE).read_bytes() == junk


# -- listings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("suts", ["smollm2-135m", "huggingface"]),
        ("hazards", HAZARDS),
        ("prompt-sets", ["mb-demo", "mb-full"]),
        ("graders", ["refusal"]),
    ],
)
def test_list(what, expected):
    result = invoke("list", what)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for word in expected:
        assert word in result.output, f"{word!r} not in `list {what}`:\n{result.output}"


def test_unknown_list_target_is_a_usage_error():
    result = invoke("list", "nope")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_graders_may_be_comma_separated_as_well_as_repeated(tmp_path):
    from modelbench.cli.app import spec_list
    from modelbench.testing import MockServer, ServerState

    assert spec_list(("refusal,minilm-ce", " llm-judge@x ", "")) == ["refusal", "minilm-ce", "llm-judge@x"]
    with MockServer(ServerState(style="on_topic")) as server:
        args = ["run", "--sut", f"openai-compat:m@{server.url}", "--graders", "refusal,minilm-clf"]
        result = CliRunner().invoke(main, [*args, "--max-items", "12", "--run-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "graders: refusal, minilm-clf" in " ".join(result.output.split())


def test_device_cuda_without_a_gpu_is_one_line_before_any_model_loads(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(
        main, ["run", "--device", "cuda", "--no-preflight", "--run-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--device cuda: torch" in result.output and "use --device cpu" in result.output
    assert not (tmp_path / "modelbench.sqlite").exists()  # nothing started


def test_a_ray_address_where_nothing_listens_is_one_line_in_seconds(tmp_path):
    import socket
    import time

    pytest.importorskip("ray")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    started = time.monotonic()
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--executor",
            "ray",
            "--ray-address",
            f"127.0.0.1:{port}",
            "--no-preflight",
            "--run-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2 and time.monotonic() - started < 30
    assert f"cannot reach Ray at 127.0.0.1:{port}: nothing answers" in " ".join(result.output.split())
