"""Evaluators declare the languages they were trained and measured on; runs on other locales say so.

The unit tests build notices from items and evaluators directly. The end-to-end tests run the
real `modelbench run` command on a prompt file with a scripted SUT (no model loads) and the
refusal evaluator, and read the notice back from the console, the record and the HTML report.
"""

import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import modelbench.graders
from modelbench import stable_hash
from modelbench.cli import main
from modelbench.graders import (
    DEFAULT_GRADERS,
    Evaluator,
    LlamaGuardAPI,
    LlamaGuardLocal,
    Verdict,
    make_evaluator,
)
from modelbench.graders.languages import (
    LanguageNotice,
    declared_languages,
    describe_languages,
    language_notices,
    language_of,
)
from modelbench.prompts import TestItem, write_items
from modelbench.suts import SUT, SUTResponse

# Every default member is English-only, so the notice names them all.
FRENCH_NOTICE = (
    f"3 items in fr_FR: graded by {'evaluators' if len(DEFAULT_GRADERS) > 1 else 'an evaluator'} trained "
    f"and measured on English only ({', '.join(DEFAULT_GRADERS)}); "
    f"{'their' if len(DEFAULT_GRADERS) > 1 else 'its'} verdicts on these items are unmeasured"
)


def item(k: int, locale: str = "en_US", hazard: str = "vcr", persona: str = "normal") -> TestItem:
    text = f"[{locale}/{hazard}/{persona}/{k}] How would someone do something harmful?"
    return TestItem(
        uid=stable_hash(text, length=20),
        hazard=hazard,
        persona=persona,
        locale=locale,
        text=text,
        source="test",
    )


class Declared(Evaluator):
    """An evaluator that says whatever it is told about its languages."""

    def __init__(self, uid: str, languages: tuple[str, ...] | None):
        self.uid = uid
        self.languages = languages

    def fingerprint(self):
        return {"evaluator": self.uid}

    async def judge(self, exchanges):
        return [Verdict(evaluator_uid=self.uid, p_unsafe=0.1) for _ in exchanges]


# -- locales and declarations --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("locale", "language"),
    [
        ("fr_FR", "fr"),
        ("en_US", "en"),
        ("en-us", "en"),
        ("EN", "en"),
        (" zh_Hans_CN ", "zh"),
        ("pt", "pt"),
        ("", "und"),
        ("C", "und"),
        ("fra_FR", "und"),
        ("12_FR", "und"),
        ("<b>x</b>", "und"),
    ],
)
def test_language_of(locale, language):
    assert language_of(locale) == language


def test_shipped_evaluators_declare_their_languages():
    evaluators = [make_evaluator(spec) for spec in DEFAULT_GRADERS]
    assert {e.uid: declared_languages(e) for e in evaluators} == {uid: ("en",) for uid in DEFAULT_GRADERS}
    meta = {"en", "fr", "de", "hi", "it", "pt", "es", "th"}
    assert set(LlamaGuardAPI.languages) == set(LlamaGuardLocal.languages) == meta
    assert describe_languages(("en",)) == "English only"
    assert describe_languages(LlamaGuardLocal.languages) == (
        "English, French, German, Hindi, Italian, Portuguese, Spanish and Thai"
    )
    assert describe_languages(None) == "not declared"


def test_every_evaluator_class_in_the_package_declares_languages():
    """A new evaluator must say what it was measured on, not inherit the ABC's "no claim"."""
    for module in pkgutil.iter_modules(modelbench.graders.__path__):
        if not module.name.startswith("train_"):
            importlib.import_module(f"modelbench.graders.{module.name}")
    found, undeclared = [], []
    stack = list(Evaluator.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if not cls.__module__.startswith("modelbench.graders.") or getattr(cls, "__abstractmethods__", None):
            continue
        found.append(cls.__name__)
        declares = any("languages" in vars(c) for c in cls.__mro__ if c is not Evaluator)
        if not declares or not all(re.fullmatch(r"[a-z]{2}", code) for code in cls.languages or ()):
            undeclared.append(cls.__name__)
    shipped = {"RefusalEvaluator", "MiniLMClassifier", "CrossEncoderClassifier", "LLMJudge"}
    assert shipped | {"LlamaGuardAPI", "LlamaGuardLocal"} <= set(found)
    assert undeclared == []


# -- notices ---------------------------------------------------------------------------------------
def test_french_items_with_the_default_evaluators_raise_a_notice_naming_them():
    evaluators = [make_evaluator(spec) for spec in DEFAULT_GRADERS]
    items = [item(k, "fr_FR") for k in range(3)] + [item(k) for k in range(5)]
    (notice,) = language_notices(items, evaluators)
    assert (notice.locale, notice.language, notice.n_items) == ("fr_FR", "fr", 3)
    assert notice.evaluators == list(DEFAULT_GRADERS)
    assert notice.message() == FRENCH_NOTICE
    assert LanguageNotice.model_validate(json.loads(json.dumps(notice.model_dump()))) == notice


def test_english_items_raise_no_notice():
    evaluators = [make_evaluator(spec) for spec in DEFAULT_GRADERS]
    assert (
        language_notices([item(k, locale) for k, locale in enumerate(["en_US", "en-GB", "en"])], evaluators)
        == []
    )


def test_an_evaluator_without_declared_languages_raises_no_notice():
    items = [item(k, "fr_FR") for k in range(2)]
    assert language_notices(items, [Declared("anything", None)]) == []
    # ... and is left out of the notice that another member raises.
    (notice,) = language_notices(items, [Declared("anything", None), Declared("english", ("en",))])
    assert notice.evaluators == ["english"]
    assert notice.message() == (
        "2 items in fr_FR: graded by an evaluator trained and measured on English only (english); "
        "its verdicts on these items are unmeasured"
    )


def test_notices_name_only_the_evaluators_that_miss_a_locale_one_per_locale():
    evaluators = [Declared("refusal", ("en",)), Declared("llama-guard", LlamaGuardLocal.languages)]
    items = [item(0, "fr_FR"), item(1, "fr_FR"), item(2, "ja_JP"), item(3, ""), item(4, "en_US")]
    notices = language_notices(items, evaluators)
    assert [(n.locale, n.language, n.n_items, n.evaluators) for n in notices] == [
        ("fr_FR", "fr", 2, ["refusal"]),
        ("", "und", 1, ["refusal", "llama-guard"]),
        ("ja_JP", "ja", 1, ["refusal", "llama-guard"]),
    ]
    assert notices[2].message() == (
        "1 item in ja_JP: graded by evaluators trained and measured on English only (refusal) and on "
        "English, French, German, Hindi, Italian, Portuguese, Spanish and Thai (llama-guard); "
        "their verdicts on these items are unmeasured"
    )
    assert notices[1].message().startswith("1 item with no locale: graded by evaluators")


# -- through a real run: console, record, HTML ----------------------------------------------------
class ScriptedSUT(SUT):
    uid = "scripted"
    batch_size = 8

    def fingerprint(self):
        return {"adapter": "scripted"}

    def build_request(self, items):
        return None

    async def call(self, request):
        return None

    def parse_response(self, items, native):
        return [SUTResponse(sut_uid=self.uid, item_uid=i.uid, text="I can't help with that.") for i in items]


MARKUP_LOCALE = "<b>x</b>[bold]"


def run_on(locales: list[str], folder: Path, monkeypatch) -> tuple[str, dict, str]:
    """`modelbench run` with the refusal grader on items of these locales; (console, record, html)."""
    monkeypatch.setattr(
        "modelbench.runner.make_sut", lambda spec, options=None, registry=None, uid=None: ScriptedSUT()
    )
    items = [
        item(k, locale, hazard, persona)
        for k, locale in enumerate(locales)
        for hazard in ("vcr", "ssh")
        for persona in ("normal", "unskilled")
    ]
    prompts = folder / "prompts.csv"
    write_items(items, prompts)
    run_dir = folder / "runs"
    result = CliRunner(env={"COLUMNS": "250"}).invoke(
        main, ["run", "--prompt-set", str(prompts), "--graders", "refusal", "--run-dir", str(run_dir)]
    )
    assert result.exit_code == 0, result.output
    run_id = re.search(r"^run (\S+): ", result.output, re.MULTILINE).group(1)
    record = json.loads((run_dir / run_id / "record.json").read_text("utf-8"))
    html = (run_dir / run_id / "report.html").read_text("utf-8")
    return result.output, record, html


def test_a_french_run_says_so_on_the_console_in_the_record_and_in_the_report(tmp_path, monkeypatch):
    output, record, html = run_on(["fr_FR", "fr_FR", "en_US", MARKUP_LOCALE], tmp_path, monkeypatch)
    french = (
        "8 items in fr_FR: graded by an evaluator trained and measured on English only (refusal); "
        "its verdicts on these items are unmeasured"
    )
    odd = f"4 items in locale '{MARKUP_LOCALE}' (language unknown): graded by an evaluator"
    lines = output.splitlines()
    # At the start (before grading) and again in the end summary, after the grade table.
    assert lines.count(french) == 2, output
    assert sum(line.startswith(odd) for line in lines) == 2, output  # rich markup printed literally
    first, last = (i for i, line in enumerate(lines) if line == french)
    assert first < next(i for i, line in enumerate(lines) if line.startswith("reused ")) < last
    assert last < next(i for i, line in enumerate(lines) if line.startswith("record: "))

    config = record["config"]
    assert config["grader_languages"] == {"refusal": ["en"]}
    assert config["graders"] == {"refusal": {"evaluator": "refusal", "version": "1"}}
    assert config["language_notices"] == [
        {
            "locale": "fr_FR",
            "language": "fr",
            "n_items": 8,
            "evaluators": ["refusal"],
            "evaluator_languages": {"refusal": ["en"]},
        },
        {
            "locale": MARKUP_LOCALE,
            "language": "und",
            "n_items": 4,
            "evaluators": ["refusal"],
            "evaluator_languages": {"refusal": ["en"]},
        },
    ]

    evaluators = html[html.index('id="evaluators"') : html.index('id="run-details"')]
    assert evaluators.count('class="notice language-notice"') == 2
    assert french in evaluators
    assert "locale &#39;&lt;b&gt;x&lt;/b&gt;[bold]&#39; (language unknown)" in evaluators
    assert "<b>x</b>" not in html


def test_a_run_whose_items_are_all_covered_shows_no_notice(tmp_path, monkeypatch):
    output, record, html = run_on(["en_US", "en_GB"], tmp_path, monkeypatch)
    assert "unmeasured" not in output
    assert record["config"]["language_notices"] == []
    assert record["config"]["grader_languages"] == {"refusal": ["en"]}
    assert "language-notice" not in html and "unmeasured" not in html
