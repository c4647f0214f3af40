"""One grammar for SUT and grader specs: each form parses to its typed object and prints back."""

import pytest

from modelbench import UserError
from modelbench.graders import EVALUATORS
from modelbench.specs import (
    GRADER_KINDS,
    TRANSFORM_NAMES,
    CompressedSpec,
    HFSpec,
    LlamaGuardAPISpec,
    LlamaGuardLocalSpec,
    LLMJudgeSpec,
    MiniLMCESpec,
    MiniLMClfSpec,
    OpenAICompatSpec,
    OpenAISpec,
    RefusalSpec,
    RegistrySpec,
    TransformSpec,
    as_grader_spec,
    parse_grader_spec,
    parse_sut_spec,
    parse_transforms,
)
from modelbench.suts import TRANSFORMS

SUT_SPECS = [
    ("smollm2-135m", RegistrySpec("smollm2-135m")),
    ("hf:/models/tiny", HFSpec("/models/tiny")),
    ("hf:~/m/file.gguf", HFSpec("~/m/file.gguf")),
    ("hf:/m+x/tiny", HFSpec("/m+x/tiny")),
    ("openai:gpt-4o-mini", OpenAISpec("gpt-4o-mini")),
    ("openai-compat:m@http://h:1/v1", OpenAICompatSpec("m", "http://h:1/v1")),
    (
        "openai-compat:org/model:q4@https://host.example/v1",
        OpenAICompatSpec("org/model:q4", "https://host.example/v1"),
    ),
    ("openai-compat:a@b@http://h/v1", OpenAICompatSpec("a@b", "http://h/v1")),
    (
        "smollm2-135m+wanda=0.5",
        CompressedSpec(RegistrySpec("smollm2-135m"), (TransformSpec("wanda", "0.5"),)),
    ),
    (
        "hf:/p+drop-layers=6+magnitude=2:4",
        CompressedSpec(HFSpec("/p"), (TransformSpec("drop-layers", "6"), TransformSpec("magnitude", "2:4"))),
    ),
    (
        "hf:/m+x/tiny+drop-layers=6+wanda=2:4",
        CompressedSpec(
            HFSpec("/m+x/tiny"), (TransformSpec("drop-layers", "6"), TransformSpec("wanda", "2:4"))
        ),
    ),
    # Values stay as written, so the uid a user typed is the uid recorded.
    (
        "smollm2-135m+wanda=.50",
        CompressedSpec(RegistrySpec("smollm2-135m"), (TransformSpec("wanda", ".50"),)),
    ),
]


@pytest.mark.parametrize(("text", "expected"), SUT_SPECS, ids=[t for t, _ in SUT_SPECS])
def test_sut_spec_parses_to_its_type_and_prints_back(text, expected):
    parsed = parse_sut_spec(text)
    assert parsed == expected and type(parsed) is type(expected)
    assert str(parsed) == text
    assert parse_sut_spec(str(expected)) == expected


def test_compressed_spec_fields():
    spec = parse_sut_spec("hf:/p+drop-layers=6+magnitude=2:4")
    assert isinstance(spec, CompressedSpec)
    assert spec.base == HFSpec("/p") and spec.chain_text == "drop-layers=6+magnitude=2:4"
    assert [(t.name, t.value) for t in spec.chain] == [("drop-layers", "6"), ("magnitude", "2:4")]


def test_specs_are_frozen_and_hashable():
    spec = parse_sut_spec("smollm2-135m+wanda=0.5")
    with pytest.raises(AttributeError):
        spec.base = RegistrySpec("other")  # type: ignore[misc]
    assert len({spec, parse_sut_spec("smollm2-135m+wanda=0.5")}) == 1


def test_a_plus_not_followed_by_a_transform_is_part_of_the_name():
    assert parse_sut_spec("my+model") == RegistrySpec("my+model")
    assert parse_sut_spec("smollm2-135m+ wanda=0.5") == RegistrySpec("smollm2-135m+ wanda=0.5")


def test_transform_chain_allows_spaces_and_keeps_values():
    assert parse_transforms(" wanda=.50 + magnitude=2:4") == (
        TransformSpec("wanda", ".50"),
        TransformSpec("magnitude", "2:4"),
    )


def test_transform_names_match_the_builders():
    assert tuple(TRANSFORMS) == TRANSFORM_NAMES


GRADER_SPECS = [
    ("refusal", RefusalSpec()),
    ("minilm-ce", MiniLMCESpec()),
    ("minilm-ce@int8", MiniLMCESpec("int8")),
    ("minilm-ce@float32", MiniLMCESpec("float32")),
    ("minilm-clf", MiniLMClfSpec()),
    ("llm-judge", LLMJudgeSpec()),
    ("llm-judge@smollm2-135m", LLMJudgeSpec(RegistrySpec("smollm2-135m"))),
    ("llm-judge@openai:gpt-4o-mini", LLMJudgeSpec(OpenAISpec("gpt-4o-mini"))),
    ("llm-judge@openai-compat:m@http://h:1/v1", LLMJudgeSpec(OpenAICompatSpec("m", "http://h:1/v1"))),
    (
        "llm-judge@hf:/p+wanda=0.5",
        LLMJudgeSpec(CompressedSpec(HFSpec("/p"), (TransformSpec("wanda", "0.5"),))),
    ),
    ("llama-guard@http://h/v1", LlamaGuardAPISpec("http://h/v1")),
    ("llama-guard@m@http://h/v1", LlamaGuardAPISpec("http://h/v1", "m")),
    (
        "llama-guard@meta-llama/Llama-Guard-3-8B@https://h:8000/v1",
        LlamaGuardAPISpec("https://h:8000/v1", "meta-llama/Llama-Guard-3-8B"),
    ),
    ("llama-guard@/local/Llama-Guard-3-1B", LlamaGuardLocalSpec("/local/Llama-Guard-3-1B")),
    ("llama-guard@~/models/guard@v3", LlamaGuardLocalSpec("~/models/guard@v3")),
]


@pytest.mark.parametrize(("text", "expected"), GRADER_SPECS, ids=[t for t, _ in GRADER_SPECS])
def test_grader_spec_parses_to_its_type_and_prints_back(text, expected):
    parsed = parse_grader_spec(text)
    assert parsed == expected and type(parsed) is type(expected)
    assert str(parsed) == text
    assert parse_grader_spec(str(expected)) == expected
    assert as_grader_spec(text) == expected and as_grader_spec(expected) is expected


def test_grader_kinds_match_the_registry():
    assert tuple(EVALUATORS) == GRADER_KINDS


BAD_SUT_SPECS = [
    ("", "empty SUT spec"),
    ("hf:", "empty path in SUT spec 'hf:'"),
    ("openai:", "empty model in SUT spec 'openai:'"),
    ("openai-compat:model-without-url", "bad SUT spec 'openai-compat:model-without-url'"),
    ("openai-compat:@http://h/v1", "bad SUT spec"),
    ("openai-compat:m@ftp://h", "bad SUT spec"),
    ("openai:gpt-4o+wanda=0.5", "needs a local base model"),
    ("openai-compat:m@http://127.0.0.1:1/v1+wanda=0.5", "needs a local base model"),
    ("smollm2-135m+wanda=0.5+", "empty transform in compression chain"),
    ("smollm2-135m+wanda=0.5++magnitude=0.5", "empty transform"),
    ("smollm2-135m+wanda=0.5+prune=0.5", "unknown compression transform 'prune'"),
    ("smollm2-135m+wanda=0.5+magnitude", "'magnitude' needs a value"),
    ("smollm2-135m+wanda=", "'wanda' needs a value"),
    ("hf:+wanda=0.5", "empty path in SUT spec 'hf:'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SUT_SPECS, ids=[t or "empty" for t, _ in BAD_SUT_SPECS])
def test_bad_sut_spec_is_one_helpful_line(text, message):
    with pytest.raises(UserError, match=message) as caught:
        parse_sut_spec(text)
    assert "\n" not in str(caught.value)


BAD_GRADER_SPECS = [
    ("nope", "unknown grader 'nope' \\(known: refusal, minilm-ce, minilm-ce@int8"),
    ("refusal@x", "unknown grader 'refusal@x'"),
    ("minilm-ce@fp16", "unknown grader 'minilm-ce@fp16'"),
    ("minilm-clf@int8", "unknown grader"),
    ("llama-guard", "needs a backend"),
    ("llama-guard@", "needs a backend"),
    ("llama-guard@@http://h/v1", "empty model before '@'"),
    ("llm-judge@", "give a SUT spec after '@'"),
    ("llm-judge@openai-compat:m", "grader 'llm-judge@openai-compat:m': bad SUT spec"),
    ("llm-judge@hf:", "grader 'llm-judge@hf:': empty path"),
]


@pytest.mark.parametrize(("text", "message"), BAD_GRADER_SPECS, ids=[t for t, _ in BAD_GRADER_SPECS])
def test_bad_grader_spec_is_one_helpful_line(text, message):
    with pytest.raises(UserError, match=message) as caught:
        parse_grader_spec(text)
    assert "\n" not in str(caught.value)


def test_typed_specs_check_themselves_when_built_in_code():
    with pytest.raises(UserError, match="bad SUT spec"):
        OpenAICompatSpec("m", "not-a-url")
    with pytest.raises(UserError, match="unknown compression transform"):
        TransformSpec("prune", "0.5")
    with pytest.raises(UserError, match="needs a local base model"):
        CompressedSpec(OpenAISpec("gpt"), (TransformSpec("wanda", "0.5"),))  # type: ignore[arg-type]
    with pytest.raises(UserError, match="empty compression chain"):
        CompressedSpec(RegistrySpec("smollm2-135m"), ())
    with pytest.raises(UserError, match="unknown grader"):
        MiniLMCESpec("fp16")
    with pytest.raises(UserError, match="bad grader spec"):
        LlamaGuardAPISpec("/not/a/url")
