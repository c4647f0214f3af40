"""The OpenAI-compatible adapter against a real local HTTP server that misbehaves on demand."""

import asyncio
import json
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from click.testing import CliRunner

from modelbench import Engine, Store, UserError, get_secret
from modelbench.cli import main
from modelbench.graders import RefusalEvaluator
from modelbench.prompts import load_prompt_set
from modelbench.scoring import EnsembleConfig
from modelbench.suts import RetryPolicy, SUTOptions, make_sut, parse_retry_after
from modelbench.testing import MockServer, ServerState

ITEMS = load_prompt_set("mb-demo").items


def answer(sut, n=1):
    async def go():
        try:
            return await sut.respond(ITEMS[:n])
        finally:
            await sut.aclose()

    return asyncio.run(go())


def sut_for(server, **options):
    options = {"concurrency": 4, "max_attempts": 3, "timeout_s": 5.0} | options
    return make_sut(f"openai-compat:mock-model@{server.url}", SUTOptions(**options))


@pytest.fixture
def server():
    with MockServer(ServerState(retry_after_s=0.2)) as running:
        yield running


def test_success_carries_text_tokens_and_the_request_we_built(server):
    [response] = answer(sut_for(server, max_new_tokens=17))
    assert response.outcome == "ok" and response.attempts == 1
    assert response.text == "Mock answer: " + ITEMS[0].text[::-1]
    assert response.completion_tokens == len(response.text.split()) and response.prompt_tokens > 0
    sent = server.state.requests[0]["body"]
    assert sent["model"] == "mock-model" and sent["max_tokens"] == 17 and sent["temperature"] == 0.0
    assert sent["messages"] == [{"role": "user", "content": ITEMS[0].text}]


def test_429_waits_for_retry_after_then_succeeds(server):
    server.script("429")
    started = time.perf_counter()
    [response] = answer(sut_for(server))
    assert response.outcome == "ok" and response.attempts == 2
    assert time.perf_counter() - started >= 0.2
    assert server.state.served == {"429": 1, "ok": 1}


def test_500_then_success(server):
    server.script("500", "503")
    [response] = answer(sut_for(server))
    assert response.outcome == "ok" and response.attempts == 3


def test_persistent_500_becomes_an_error_after_max_attempts(server):
    server.script("500", "500", "500", "500")
    [response] = answer(sut_for(server, max_attempts=3))
    assert response.outcome == "error" and response.attempts == 3
    assert "HTTP 500" in response.error and "gave up after 3 attempts" in response.error
    assert response.text is None
    assert server.state.served == {"500": 3}


def test_timeout_is_retried_then_recorded(server):
    server.state.hang_s = 3.0
    server.script("timeout", "timeout")
    started = time.perf_counter()
    [response] = answer(sut_for(server, timeout_s=0.3, max_attempts=2))
    assert response.outcome == "error" and response.attempts == 2
    assert "timed out" in response.error
    assert time.perf_counter() - started < 2.5


def test_malformed_body_empty_choices_and_content_filter_are_distinct_outcomes(server):
    server.script("garbage", "empty", "content_filter")
    outcomes = [answer(sut_for(server, max_attempts=1))[0] for _ in range(3)]
    assert [r.outcome for r in outcomes] == ["invalid_response", "empty_choices", "content_filter"]
    assert all(r.attempts == 1 for r in outcomes)
    assert "non-JSON body" in outcomes[0].error
    assert not outcomes[0].gradable and not outcomes[1].gradable and outcomes[2].gradable


def test_a_malformed_200_body_is_retried_and_fails_loudly_when_it_persists(server):
    # Behind a proxy a 200 with an HTML page is as transient as a 502.
    server.script("garbage")
    [response] = answer(sut_for(server, max_attempts=3))
    assert response.outcome == "ok" and response.attempts == 2
    server.script("garbage", "garbage", "garbage")
    [response] = answer(sut_for(server, max_attempts=3))
    assert response.outcome == "invalid_response" and response.attempts == 3
    assert "non-JSON body" in response.error


def test_connection_refused_is_retried_then_an_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sut = make_sut(f"openai-compat:m@http://127.0.0.1:{port}/v1", SUTOptions(max_attempts=2))
    [response] = answer(sut)
    assert response.outcome == "error" and response.attempts == 2
    assert "connection error" in response.error


def test_4xx_is_not_retried(server):
    # A bad request will not get better by asking again.
    server.script("400")
    [response] = answer(sut_for(server, max_attempts=4))
    assert response.outcome == "error" and response.attempts == 1 and "HTTP 400" in response.error
    assert "unknown model" in response.error


def test_concurrency_overlaps_requests():
    with MockServer(ServerState(latency_s=0.2)) as server:
        started = time.perf_counter()
        responses = answer(sut_for(server, concurrency=16), n=16)
        elapsed = time.perf_counter() - started
    assert all(r.outcome == "ok" for r in responses)
    assert elapsed < 1.5  # 16 x 0.2 s one at a time would be 3.2 s


def test_fault_injection_run_ends_every_item_exactly_once(tmp_path):
    items = load_prompt_set("mb-full").items[:1000]
    state = ServerState(fault_rate=0.2, seed=3, retry_after_s=0.01, hang_s=2.0, record_requests=False)
    with MockServer(state) as server:
        sut = sut_for(server, concurrency=32, timeout_s=0.5, max_attempts=4)
        store = Store(tmp_path / "s.sqlite")
        outcome = asyncio.run(Engine(store, [sut], [RefusalEvaluator()], EnsembleConfig(), "r").run(items))
    rows = store.run_rows("r")
    assert sorted(r["item_uid"] for r in rows) == sorted(i.uid for i in items)  # each exactly once
    stats = outcome.sut_stats[sut.uid]
    assert sum(stats.outcomes.values()) == len(items) == stats.responses_new
    assert store.count("responses") == len(items)
    gradable = sum(1 for r in rows if r["outcome"] in ("ok", "content_filter"))
    assert gradable + stats.response_errors == len(items)
    # Every fault is retried, malformed 200 bodies too: only one that persists through every
    # attempt fails (a handful in 1,000 at 20% faults and 4 attempts).
    assert stats.outcomes.get("invalid_response", 0) <= 5 and gradable > 0.95 * len(items)


def test_retry_policy_and_retry_after_parsing():
    assert parse_retry_after("2.5") == 2.5 and parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    policy = RetryPolicy(base_s=1.0, max_backoff_s=4.0, max_retry_after_s=10)
    assert all(0 <= policy.backoff(a) <= min(4.0, 2 ** (a - 1)) for a in range(1, 8) for _ in range(20))
    assert policy.wait(1, "999") == 10


def test_spec_errors_and_api_keys(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="bad SUT spec"):
        make_sut("openai-compat:model-without-url")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MODELBENCH_SECRETS_FILE", raising=False)
    with pytest.raises(UserError, match="needs an API key: set OPENAI_API_KEY"):
        make_sut("openai:gpt-4o-mini")
    secrets = tmp_path / "secrets"
    secrets.write_text("OPENAI_API_KEY=sk-from-file\n")
    secrets.chmod(0o644)
    with pytest.raises(UserError, match="readable by others"):
        get_secret("OPENAI_API_KEY", secrets)
    secrets.chmod(0o600)
    assert get_secret("OPENAI_API_KEY", secrets) == "sk-from-file"
    sut = make_sut("openai:gpt-4o-mini", SUTOptions(secrets_file=secrets))
    assert "sk-from-file" not in json.dumps(sut.fingerprint()) + json.dumps(sut.metadata())


def test_cli_run_against_the_server_never_writes_the_key(tmp_path, monkeypatch):
    key = "sk-test-SECRET-4242"
    monkeypatch.setenv("OPENAI_COMPAT_API_KEY", key)
    with MockServer() as server:
        args = [
            "run",
            "--sut",
            f"openai-compat:mock@{server.url}",
            "--max-items",
            "24",
            "--run-dir",
            str(tmp_path),
        ]
        result = CliRunner(env={"COLUMNS": "200"}).invoke(main, args)
        assert result.exit_code == 0, result.output
        assert server.state.requests[0]["headers"]["authorization"] == f"Bearer {key}"
    assert "reused 0/24" in result.output and key not in result.output
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    record = json.loads(next(tmp_path.glob("*/record.json")).read_text())
    assert record["counts"]["responses_new"] == 24 and len(record["scores"][0]["hazards"]) == 12
    assert os.environ["OPENAI_COMPAT_API_KEY"] == key


def _preflight(sut) -> None:
    async def check():
        try:
            await sut.preflight("SUT remote")
        finally:
            await sut.aclose()

    asyncio.run(check())


def test_a_closed_port_and_an_unknown_host_are_each_one_plain_line():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = make_sut(f"openai-compat:m@http://127.0.0.1:{port}/v1", SUTOptions())
    with pytest.raises(UserError, match=r"cannot reach .*: connection refused \(is the server running"):
        _preflight(closed)
    nowhere = make_sut("openai-compat:m@http://no-such-host.invalid/v1", SUTOptions())
    with pytest.raises(UserError, match=r"cannot reach http://no-such-host.invalid/v1: unknown host"):
        _preflight(nowhere)


def test_the_key_travels_as_a_bearer_header(server, monkeypatch):
    server.state.record_requests = True
    monkeypatch.setenv("OPENAI_COMPAT_API_KEY", "sk-test")
    sut = make_sut(f"openai-compat:m@{server.url}", SUTOptions())
    [response] = answer(sut)
    assert response.outcome == "ok"
    assert server.state.requests[-1]["headers"]["authorization"] == "Bearer sk-test"
