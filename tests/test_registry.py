"""The evaluator registry: built-ins registered by kind, new kinds by one decorated factory, lazily."""

import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest

from modelbench import GRADER_KINDS, UserError, parse_grader_spec
from modelbench.graders import DEFAULT_GRADERS, Evaluator, Exchange, Verdict, make_evaluator
from modelbench.graders.registry import EVALUATORS, evaluator, evaluator_entry, unregister_evaluator


def test_every_grader_kind_has_a_factory_and_a_description():
    assert tuple(EVALUATORS) == GRADER_KINDS
    for kind in GRADER_KINDS:
        entry = evaluator_entry(kind)
        assert entry.kind == kind and callable(entry.factory)
        assert entry.description and EVALUATORS[kind] is entry


@pytest.mark.parametrize(
    "text", ["refusal", "minilm-ce", "minilm-ce@int8", "minilm-clf", "llm-judge", "llama-guard@http://h:1/v1"]
)
def test_every_parsed_spec_names_a_registered_kind(text):
    assert parse_grader_spec(text).kind in EVALUATORS


def test_default_graders_are_registered():
    assert DEFAULT_GRADERS == ("minilm-ce",)
    assert all(parse_grader_spec(spec).kind in EVALUATORS for spec in DEFAULT_GRADERS)


def test_make_evaluator_builds_the_refusal_evaluator_from_text():
    from modelbench.graders import RefusalEvaluator

    assert isinstance(make_evaluator("refusal"), RefusalEvaluator)


class _FakeEvaluator(Evaluator):
    uid = "fake-test"
    languages = ("en",)

    def __init__(self, level: float) -> None:
        self.level = level

    def fingerprint(self) -> dict:
        return {"uid": self.uid, "level": self.level}

    async def judge(self, exchanges: list[Exchange]) -> list[Verdict]:  # pragma: no cover - never graded
        raise NotImplementedError


@dataclass(frozen=True)
class _FakeSpec:
    """A spec the grammar does not know: make_evaluator takes parsed specs, so a kind needs no parser."""

    kind: ClassVar[str] = "fake-test"
    level: float = 0.5

    def __str__(self) -> str:
        return f"fake-test@{self.level}"


@pytest.fixture
def fake_kind():
    seen = []

    @evaluator(kind="fake-test", description="a fake evaluator registered by a test")
    def fake(spec, sut_options=None, registry=None):
        seen.append((spec, sut_options, registry))
        return _FakeEvaluator(spec.level)

    try:
        yield seen
    finally:
        unregister_evaluator("fake-test")
    assert "fake-test" not in EVALUATORS


def test_a_registered_evaluator_is_found_through_its_spec_kind(fake_kind):
    assert EVALUATORS["fake-test"].description == "a fake evaluator registered by a test"
    assert list(EVALUATORS)[-1] == "fake-test"
    made = make_evaluator(_FakeSpec(0.25), "options", "registry")
    assert isinstance(made, _FakeEvaluator) and made.level == 0.25
    assert fake_kind == [(_FakeSpec(0.25), "options", "registry")]


def test_a_kind_registers_once(fake_kind):
    with pytest.raises(ValueError, match="already registered"):
        evaluator(kind="fake-test", description="again")(lambda spec, options, registry: None)
    with pytest.raises(ValueError, match="already registered"):
        evaluator(kind="refusal", description="again")(lambda spec, options, registry: None)


def test_an_unregistered_kind_is_a_user_error():
    with pytest.raises(UserError, match="no evaluator registered for grader kind 'fake-test'"):
        make_evaluator(_FakeSpec())


def test_importing_the_registry_loads_no_heavy_module():
    heavy = (
        "torch",
        "transformers",
        "safetensors",
        "modelbench.graders.cross_encoder",
        "modelbench.graders.minilm",
        "modelbench.graders.llama_guard",
        "modelbench.graders.llm_judge",
    )
    code = (
        "import sys, modelbench.graders as r\n"
        "assert len(r.EVALUATORS) == 5, dict(r.EVALUATORS)\n"
        f"heavy = {heavy!r}\n"
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- SUT adapters ------------------------------------------------------------------------------------


def test_builtin_sut_adapters_are_registered():
    from modelbench.suts import ADAPTERS, builtin_registry

    # The built-ins first; any others were registered in this process by the test SUTs that
    # modelbench.testing.suts brings (imported by the Ray executor's tests).
    assert tuple(ADAPTERS)[:3] == ("huggingface", "openai_compat", "compressed")
    assert all(name.startswith("testing-") for name in tuple(ADAPTERS)[3:])
    assert {entry.adapter for entry in builtin_registry().values()} <= set(ADAPTERS)
    # A built-in is named by where it lives, and imported only when a spec needs it.
    from importlib import import_module

    for name in ("huggingface", "openai_compat", "compressed"):
        module, _, cls = ADAPTERS[name].partition(":")
        assert callable(getattr(import_module(module), cls).from_spec)


def test_a_registered_sut_adapter_is_found_through_the_entry():
    from modelbench.suts import SUT
    from modelbench.suts.registry import ADAPTERS, SUTEntry, SUTOptions, adapter, make_sut

    class FakeSUT(SUT):
        def __init__(self, uid, meta):
            self.uid, self.meta = uid, meta

        def fingerprint(self):
            return {"uid": self.uid}

        def build_request(self, items):  # pragma: no cover - never asked here
            raise NotImplementedError

        async def call(self, request):  # pragma: no cover
            raise NotImplementedError

        def parse_response(self, items, native):  # pragma: no cover
            raise NotImplementedError

    @adapter("fake-test")
    def fake(uid, entry, options, meta):
        return FakeSUT(uid, meta | {"max_new_tokens": options.max_new_tokens})

    try:
        with pytest.raises(ValueError, match="already registered"):
            adapter("fake-test")(fake)
        registry = {"fake-sut": SUTEntry(adapter="fake-test", params=7)}
        sut = make_sut("fake-sut", SUTOptions(max_new_tokens=3), registry)
        assert isinstance(sut, FakeSUT) and sut.uid == "fake-sut"
        assert sut.meta == {"display_name": "", "params": 7, "max_new_tokens": 3}
    finally:
        ADAPTERS.pop("fake-test", None)
    with pytest.raises(UserError, match="unsupported adapter 'fake-test'"):
        make_sut("fake-sut", None, registry)


def test_importing_the_sut_registry_loads_no_heavy_module():
    code = (
        "import sys, modelbench.suts.registry\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'openai')\n"
        "             or m in ('modelbench.suts.huggingface', 'modelbench.suts.openai_compat')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_bad_sut_config_names_the_entry_and_every_field(tmp_path):
    from click.testing import CliRunner

    from modelbench.cli import main

    path = tmp_path / "suts.yaml"
    path.write_text(
        "suts:\n  mine:\n    adapter: openai_compat\n    endpoint: {base_url: 'http://127.0.0.1:1/v1'}\n"
        "    params: lots\n",
        "utf-8",
    )
    result = CliRunner().invoke(main, ["run", "--sut", "mine", "--sut-config", str(path), "--no-preflight"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "entry 'mine': endpoint.model: Field required; params: Input should be a valid integer" in text
