"""The three-step SUT contract: the base class runs build_request, call, parse_response; the pure
steps are tested here as plain functions, without a server or a model."""

import asyncio
import json
import typing

import pytest

from modelbench import RegistrySpec, SUTSpec
from modelbench.prompts import TestItem
from modelbench.suts import ADAPTERS, SUT, Endpoint, SUTOptions, SUTResponse, make_sut
from modelbench.suts.huggingface import Generation, GenerationRequest, HuggingFaceSUT
from modelbench.suts.openai_compat import ChatReplies, ChatRequests, OpenAICompatSUT, RawReply, Sent


def items(n: int = 2) -> list[TestItem]:
    return [
        TestItem(uid=f"q{i}", hazard="vcr", persona="normal", text=f"question {i}", source="test")
        for i in range(n)
    ]


def api_sut(**kwargs) -> OpenAICompatSUT:
    options = kwargs.pop("options", SUTOptions(max_new_tokens=17, temperature=0.3))
    return OpenAICompatSUT("api", Endpoint(model="m", base_url="http://127.0.0.1:9/v1"), options, **kwargs)


def body(**fields) -> str:
    return json.dumps({"id": "x", "object": "chat.completion"} | fields)


# -- the base class -----------------------------------------------------------------------------
def test_overriding_respond_fails_when_the_class_is_made():
    with pytest.raises(TypeError, match="overrides SUT.respond.*build_request.*call.*parse_response"):

        class Direct(SUT):
            def fingerprint(self):
                return {}

            async def respond(self, items):
                return []

    with pytest.raises(TypeError, match="overrides SUT.respond"):

        class Deeper(HuggingFaceSUT):
            async def respond(self, items):
                return []


def test_the_three_steps_are_abstract_and_run_in_order():
    class Partial(SUT):
        def fingerprint(self):
            return {}

        def build_request(self, items):
            return items

    with pytest.raises(TypeError, match="abstract"):
        Partial()

    class Echo(SUT):
        uid = "echo"

        def __init__(self):
            self.steps = []

        def fingerprint(self):
            return {}

        def build_request(self, items):
            self.steps.append("build")
            return [i.text.upper() for i in items]

        async def call(self, request):
            self.steps.append("call")
            return [t + "!" for t in request]

        def parse_response(self, items, native):
            self.steps.append("parse")
            return [
                SUTResponse(sut_uid=self.uid, item_uid=i.uid, text=t)
                for i, t in zip(items, native, strict=True)
            ]

    echo = Echo()
    responses = asyncio.run(echo.respond(items()))
    assert echo.steps == ["build", "call", "parse"]
    assert [r.text for r in responses] == ["QUESTION 0!", "QUESTION 1!"]
    assert not echo.can("batching") and echo.first_token_logprobs(["t"], "p", ["a", "b"]) is None
    with pytest.raises(NotImplementedError, match="choice_scores"):
        echo.choice_logprobs(["t"], "p", ["a", "b"])


def test_capabilities_are_declared_not_read_from_the_class():
    assert HuggingFaceSUT.capabilities == {"batching", "choice_scores", "first_token_scores", "accelerator"}
    assert not api_sut().capabilities


# -- the OpenAI-compatible adapter's pure steps ---------------------------------------------------
def test_build_request_gives_one_chat_body_per_item_with_the_run_options():
    request = api_sut().build_request(items())
    assert isinstance(request, ChatRequests)
    assert request.bodies == [
        {
            "model": "m",
            "messages": [{"role": "user", "content": f"question {i}"}],
            "temperature": 0.3,
            "max_tokens": 17,
        }
        for i in range(2)
    ]
    [with_system] = api_sut(system_prompt="Be brief.").build_request(items(1)).bodies
    assert with_system["messages"][0] == {"role": "system", "content": "Be brief."}


def test_parse_response_maps_each_native_body_to_its_outcome():
    sut = api_sut(api_key="sk-secret-key-1234567890")
    normal = body(
        choices=[{"index": 0, "message": {"role": "assistant", "content": "Sure."}, "finish_reason": "stop"}],
        usage={"prompt_tokens": 5, "completion_tokens": 2},
    )
    filtered = body(choices=[{"message": {"content": None}, "finish_reason": "content_filter"}])
    sent = [
        Sent(RawReply(200, normal, 0.5), "", 1),
        Sent(RawReply(200, body(choices=[]), 0.1), "", 2),
        Sent(RawReply(200, filtered, 0.1), "", 1),
        Sent(RawReply(200, "<html>sk-secret-key-1234567890</html>", 0.1), "", 1),
        Sent(RawReply(200, body(), 0.1), "", 1),
        Sent(None, "HTTP 503: busy (gave up after 3 attempts)", 3),
    ]
    got = sut.parse_response(items(6), ChatReplies(sent=sent))
    assert [r.item_uid for r in got] == [f"q{i}" for i in range(6)]
    assert [r.outcome for r in got] == [
        "ok",
        "empty_choices",
        "content_filter",
        "invalid_response",
        "invalid_response",
        "error",
    ]
    ok = got[0]
    assert (ok.text, ok.prompt_tokens, ok.completion_tokens) == ("Sure.", 5, 2)
    assert ok.latency_s == 0.5 and ok.attempts == 1
    assert got[1].attempts == 2 and got[2].text == "" and got[2].gradable
    assert "sk-secret" not in got[3].error
    assert got[5].error.startswith("HTTP 503") and got[5].attempts == 3 and not got[5].gradable


# -- the HuggingFace adapter's pure steps (no model is loaded) ------------------------------------
def test_huggingface_pure_steps(tmp_path):
    sut = HuggingFaceSUT("local", tmp_path, SUTOptions(max_new_tokens=3), system_prompt="Be brief.")
    request = sut.build_request(items())
    assert isinstance(request, GenerationRequest)
    assert request.messages[1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "question 1"},
    ]
    native = Generation(texts=[" a ", "b\n"], prompt_tokens=[4, 6], completion_tokens=[1, 2], latency_s=0.7)
    got = sut.parse_response(items(), native)
    assert [(r.item_uid, r.text, r.prompt_tokens, r.completion_tokens) for r in got] == [
        ("q0", "a", 4, 1),
        ("q1", "b", 6, 2),
    ]
    assert all(r.outcome == "ok" and r.latency_s == 0.7 for r in got) and sut._loaded is None


def test_plain_format_without_a_chat_template(tmp_path):
    class NoTemplate:
        chat_template = None

    sut = HuggingFaceSUT("base", tmp_path, system_prompt="Be brief.")
    assert sut.build_prompts(NoTemplate(), items(1)) == ["Be brief.\nUser: question 0\nAssistant:"]


# -- options whole, one maker per spec kind -------------------------------------------------------
def test_adapters_take_the_options_object_whole(tiny_llama, monkeypatch):
    options = SUTOptions(max_new_tokens=9, concurrency=3, max_attempts=2, timeout_s=7.0)
    api = make_sut("openai-compat:m@http://127.0.0.1:9/v1", options)
    assert api.options is options and api.concurrency == 3 and api.retry.max_attempts == 2
    assert api.endpoint == Endpoint(
        base_url="http://127.0.0.1:9/v1", model="m", api_key_env="OPENAI_COMPAT_API_KEY"
    )
    local = make_sut(f"hf:{tiny_llama}", options)
    assert local.options is options and local.max_new_tokens == 9
    compressed = make_sut(f"hf:{tiny_llama}+magnitude=0.5", options)
    assert compressed.options is options and compressed.calibration_size == options.calibration_size


def test_every_kind_of_sut_spec_has_a_maker():
    """A registry name's adapter comes from its entry; every other spec class names its own."""
    kinds = set(typing.get_args(SUTSpec)) - {RegistrySpec}
    assert kinds and all(kind.adapter in ADAPTERS for kind in kinds)
