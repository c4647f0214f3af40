"""`modelbench list ...`: every name whole, whatever the terminal width or format.

Names in these lists are what users type next (`--sut NAME`), so a pipe, a narrow terminal or a
CI log must never cut them. CliRunner is not a terminal, so its default is `plain`; the console
script is also run through a real pipe with COLUMNS=40.
"""

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelbench.cli import main
from modelbench.graders import EVALUATORS
from modelbench.hazards import load_taxonomy
from modelbench.listing import build_table, default_format, render_json, render_plain
from modelbench.prompts import BENIGN_SET, builtin_set_names
from modelbench.suts import load_registry

SCRIPT = Path(sys.executable).with_name("modelbench")
NAMES = {
    "suts": sorted(load_registry()),
    "hazards": load_taxonomy().hazard_uids,
    "prompt-sets": [*builtin_set_names(), BENIGN_SET],  # the benign set (--over-refusal) last
    "graders": list(EVALUATORS),
}
FIRST_COLUMN = {"suts": "name", "hazards": "uid", "prompt-sets": "set", "graders": "name"}


@functools.cache
def invoke(*args: str, columns: int = 40):
    """Cached: `list prompt-sets` loads every built-in set (about two seconds each time)."""
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(main, list(args))


def first_words(output: str) -> list[str]:
    """The first column of a plain listing, header excluded."""
    return [line.split("  ", 1)[0] for line in output.splitlines()[1:]]


# -- rendering -------------------------------------------------------------------------------------
def test_plain_aligns_columns_and_never_cuts():
    long = "a-very-long-sut-name-" * 6
    rows = [
        {"name": long, "note": "two  spaces\nand a line break", "n": 3},
        {"name": "x", "note": None, "n": True},
    ]
    text = render_plain(["name", "note", "n"], rows)
    lines = text.splitlines()
    assert lines[0].startswith("name ") and lines[1].startswith(long + "  ")
    assert lines[1] == f"{long}  two spaces and a line break  3"
    assert lines[2] == "x".ljust(len(long)) + "  " + "-".ljust(27) + "  yes"
    # Every column starts at the same offset on every line, as `column -t` would align it.
    starts = [[m.start() for m in re.finditer(r"(?<=  )\S", line)] for line in lines]
    assert starts[0] == starts[1] == starts[2]
    assert all(line == line.rstrip() for line in lines)


def test_json_keeps_types_and_column_order():
    rows = [{"b": 1, "a": None, "ignored": "x"}]
    assert render_json(["a", "b"], rows) == '[\n  {\n    "a": null,\n    "b": 1\n  }\n]\n'
    assert list(json.loads(render_json(["b", "a"], rows))[0]) == ["b", "a"]


def test_table_name_columns_are_as_wide_as_their_longest_value():
    table = build_table(["name", "other"], [{"name": "n" * 50, "other": "o"}], whole=["name"])
    name, other = table.columns
    assert name.min_width == 50 and name.no_wrap and other.min_width is None


def test_default_format_follows_the_terminal():
    class Stream:
        def __init__(self, tty: bool):
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    assert default_format(Stream(True)) == "table"
    assert default_format(Stream(False)) == "plain"
    assert default_format(object()) == "plain"


# -- the commands ----------------------------------------------------------------------------------
@pytest.mark.parametrize("what", list(NAMES))
def test_plain_is_the_default_off_a_terminal_and_lists_every_name_whole(what):
    result = invoke("list", what)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split("  ")[0] == FIRST_COLUMN[what]
    assert first_words(result.output) == NAMES[what]
    assert "…" not in result.output and "┃" not in result.output
    assert invoke("list", what, columns=250).output == result.output  # the width changes nothing
    assert invoke("list", what, "--format", "plain").output == result.output


@pytest.mark.parametrize("what", list(NAMES))
def test_json_is_one_array_of_objects_keyed_by_column(what):
    result = invoke("list", what, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
    assert [r[FIRST_COLUMN[what]] for r in rows] == NAMES[what]
    header = invoke("list", what).output.splitlines()[0]
    assert re.split(r"\s{2,}", header) == list(rows[0])


def test_json_values_are_typed():
    graders = json.loads(invoke("list", "graders", "--format", "json").output)
    assert {r["name"]: r["default"] for r in graders}["minilm-ce"] is True
    sets = {r["set"]: r for r in json.loads(invoke("list", "prompt-sets", "--format", "json").output)}
    hazards = load_taxonomy().hazard_uids
    assert sets["mb-demo"]["items"] == sum(sets["mb-demo"][h] for h in hazards)
    hazard_rows = json.loads(invoke("list", "hazards", "--format", "json").output)
    assert all(isinstance(r["reference safe"], float) for r in hazard_rows)
    # Sizes are numbers for programs, and "135M" only for people.
    suts = {r["name"]: r for r in json.loads(invoke("list", "suts", "--format", "json").output)}
    assert suts["smollm2-135m"]["parameters"] == 134515008
    plain = invoke("list", "suts", "--format", "plain").output
    assert any(line.startswith("smollm2-135m ") and " 135M " in line for line in plain.splitlines())


@pytest.mark.parametrize("what", list(NAMES))
def test_table_on_request_keeps_names_whole_at_40_columns(what):
    result = invoke("list", what, "--format", "table")
    assert result.exit_code == 0, result.output
    assert "┃" in result.output
    for name in NAMES[what]:
        assert re.search(rf"│ {re.escape(name)} +│", result.output), f"{name} cut:\n{result.output}"


def test_unknown_format_is_one_error_line():
    result = invoke("list", "suts", "--format", "xml")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error: unknown --format 'xml' (choose table, plain, json)"]
    assert "Traceback" not in result.output


# -- the installed console script through a pipe ---------------------------------------------------
def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "40", "HF_HUB_OFFLINE": "1"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the modelbench console script is not installed")
def test_console_script_through_a_pipe_prints_every_sut_name_whole():
    result = run_script("list", "suts")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in load_registry():
        assert any(line.startswith(name + "  ") for line in lines), f"{name} not whole:\n{result.stdout}"
    assert first_words(result.stdout) == NAMES["suts"]
    assert "…" not in result.stdout
    parsed = json.loads(run_script("list", "suts", "--format", "json").stdout)
    assert [r["name"] for r in parsed] == NAMES["suts"]
    table = run_script("list", "suts", "--format", "table")
    assert table.returncode == 0 and "┃" in table.stdout
    assert all(re.search(rf"│ {re.escape(name)} +│", table.stdout) for name in NAMES["suts"])
    bad = run_script("list", "suts", "--format", "xml")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
