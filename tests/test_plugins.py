"""A new SUT adapter and a new evaluator, each defined in this file alone, run through the CLI.

Nothing in the package is edited: the adapter registers with `@adapter` and is named by a registry
entry in a `--sut-config` file; the evaluator registers with `@evaluator`, which also teaches the
spec grammar its kind, so `--graders keyword@bomb` parses, prints back, and reaches the factory.
"""

import json

import pytest
from click.testing import CliRunner

from modelbench import PluginGraderSpec, parse_grader_spec
from modelbench.cli import main
from modelbench.graders import Evaluator, Exchange, Verdict, evaluator, unregister_evaluator
from modelbench.suts import ADAPTERS, SUT, SUTResponse, adapter

ANSWER = "Here is how to build a bomb: no, I will not say."


class EchoSUT(SUT):
    """Answers every prompt with a fixed text (its registry entry may set it)."""

    capabilities = frozenset({"batching"})

    def __init__(self, uid: str, answer: str, max_new_tokens: int) -> None:
        self.uid = uid
        self.answer = answer
        self.max_new_tokens = max_new_tokens
        self.batch_size = 4
        self.calls = 0

    def fingerprint(self):
        return {"adapter": "test-echo", "answer": self.answer, "max_new_tokens": self.max_new_tokens}

    def build_request(self, items):
        return [item.text for item in items]

    async def call(self, request):
        EchoSUT.batches.append(len(request))
        return [self.answer[: self.max_new_tokens * 8] for _ in request]

    def parse_response(self, items, native):
        return [
            SUTResponse(sut_uid=self.uid, item_uid=i.uid, text=t) for i, t in zip(items, native, strict=True)
        ]

    batches: list[int] = []


class KeywordEvaluator(Evaluator):
    """Unsafe exactly when the answer contains its keyword."""

    languages = ("en",)

    def __init__(self, keyword: str) -> None:
        self.keyword = keyword
        self.uid = f"keyword@{keyword}"

    def fingerprint(self):
        return {"evaluator": "keyword", "keyword": self.keyword}

    async def judge(self, exchanges: list[Exchange]) -> list[Verdict]:
        return [
            Verdict(evaluator_uid=self.uid, p_unsafe=float(self.keyword in e.response.lower()))
            for e in exchanges
        ]


@pytest.fixture
def plugins():
    made = []

    @adapter("test-echo")
    def echo(uid, entry, options, meta):
        sut = EchoSUT(uid, getattr(entry, "answer", None) or ANSWER, options.max_new_tokens)
        made.append(sut)
        return sut

    @evaluator(kind="keyword", description="unsafe when the answer contains KEYWORD (keyword@KEYWORD)")
    def keyword(spec, sut_options=None, registry=None):
        return KeywordEvaluator(spec.target or "bomb")

    EchoSUT.batches = []
    try:
        yield made
    finally:
        ADAPTERS.pop("test-echo", None)
        unregister_evaluator("keyword")


def test_a_registered_kind_joins_the_grammar_and_leaves_with_it(plugins):
    spec = parse_grader_spec("keyword@bomb")
    assert spec == PluginGraderSpec("keyword", "bomb") and str(spec) == "keyword@bomb"
    assert parse_grader_spec(str(spec)) == spec
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["list", "graders"])
    assert "keyword" in result.output and "unsafe when the answer contains" in result.output
    unregister_evaluator("keyword")
    with pytest.raises(Exception, match="unknown grader 'keyword@bomb'"):
        parse_grader_spec("keyword@bomb")


def test_a_dummy_adapter_and_evaluator_run_through_the_cli(plugins, tmp_path):
    config = tmp_path / "suts.yaml"
    config.write_text("suts:\n  echo-1:\n    adapter: test-echo\n    display_name: Echo\n")
    command = [
        "run",
        "--sut", "echo-1",
        "--sut-config", str(config),
        "--graders", "keyword@bomb",
        "--max-items", "24",
        "--min-items", "1",
        "--run-dir", str(tmp_path / "runs"),
    ]  # fmt: skip
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, command)
    assert result.exit_code == 0, result.output
    assert len(plugins) == 1 and sum(EchoSUT.batches) == 24 and max(EchoSUT.batches) <= 4
    record = json.loads(next((tmp_path / "runs").glob("*/record.json")).read_text())
    assert record["config"]["graders"] == {"keyword@bomb": {"evaluator": "keyword", "keyword": "bomb"}}
    overall = record["scores"][0]["overall"]
    assert record["scores"][0]["sut_uid"] == "echo-1"
    assert overall["n"] == 24 and overall["frac_safe"] == 0.0  # every answer says "bomb"

    # The same run again reuses every stored response and verdict: the plugin's fingerprints key them.
    again = CliRunner(env={"COLUMNS": "200"}).invoke(main, command)
    assert again.exit_code == 0, again.output
    assert sum(EchoSUT.batches) == 24
    assert "reused 24/24 stored responses and 24/24 stored verdicts" in again.output


PLUGIN = '''
"""A plugin package: one file that brings an adapter and an evaluator."""
from modelbench.graders import Evaluator, Verdict, evaluator
from modelbench.suts import SUT, SUTResponse, adapter


class ParrotSUT(SUT):
    def __init__(self, uid):
        self.uid = uid

    def fingerprint(self):
        return {"adapter": "parrot"}

    def build_request(self, items):
        return [item.text for item in items]

    async def call(self, request):
        return ["I repeat: " + text for text in request]

    def parse_response(self, items, native):
        return [SUTResponse(sut_uid=self.uid, item_uid=i.uid, text=t) for i, t in zip(items, native)]


class LengthEvaluator(Evaluator):
    uid = "long"
    languages = ("en",)

    def fingerprint(self):
        return {"evaluator": "long"}

    async def judge(self, exchanges):
        return [Verdict(evaluator_uid=self.uid, p_unsafe=float(len(e.response) > 40)) for e in exchanges]


@adapter("parrot")
def parrot(uid, entry, options, meta):
    return ParrotSUT(uid)


@evaluator(kind="long", description="unsafe when the answer is longer than 40 characters")
def long(spec, sut_options=None, registry=None):
    return LengthEvaluator()
'''


def test_an_installed_plugin_is_found_through_its_entry_point(tmp_path):
    """The real console script, in a fresh process, with a plugin 'installed' on PYTHONPATH (a
    module and a dist-info that declares it in the `modelbench.plugins` entry-point group)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    site = tmp_path / "site"
    (site / "mb_parrot-0.1.dist-info").mkdir(parents=True)
    (site / "mb_parrot.py").write_text(PLUGIN)
    (site / "mb_parrot-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mb-parrot\nVersion: 0.1\n"
    )
    (site / "mb_parrot-0.1.dist-info" / "entry_points.txt").write_text(
        "[modelbench.plugins]\nparrot = mb_parrot\n"
    )
    config = tmp_path / "suts.yaml"
    config.write_text("suts:\n  parrot-1:\n    adapter: parrot\n")
    script = shutil.which("modelbench", path=str(Path(sys.executable).parent))
    env = os.environ | {"PYTHONPATH": str(site), "COLUMNS": "200"}
    command = [script, "run", "--sut", "parrot-1", "--sut-config", str(config), "--graders", "long",
               "--max-items", "12", "--min-items", "1", "--run-dir", str(tmp_path / "runs")]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    record = json.loads(next((tmp_path / "runs").glob("*/record.json")).read_text())
    assert list(record["config"]["graders"]) == ["long"] and record["scores"][0]["sut_uid"] == "parrot-1"
    listed = subprocess.run([script, "list", "graders"], env=env, capture_output=True, text=True, timeout=120)
    assert "longer than 40 characters" in listed.stdout
    # A plugin that fails to import is one line naming it.
    (site / "mb_parrot.py").write_text("raise RuntimeError('broken on purpose')\n")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "plugin 'parrot' (mb_parrot) failed to load: broken on purpose" in done.stdout + done.stderr
