"""Runs that fail say so: against real local HTTP servers, each way a run goes wrong ends with the
right exit code and the reason on the console, and the next run retries what failed.

Exit codes: 0 clean, 2 bad input (including a failed preflight), 3 finished with errors,
130 interrupted (tests/test_robustness.py).
"""

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from modelbench import STORE_NAME, Store, UserError
from modelbench.cli import main
from modelbench.prompts import TestItem
from modelbench.suts import Endpoint, OpenAICompatSUT, RetryPolicy, SUTOptions
from modelbench.testing import MockServer, ServerState


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(tmp_path, *args: str):
    common = ["--max-items", "4", "--run-dir", str(tmp_path), "--seed", "0"]
    return CliRunner().invoke(main, ["run", *args, *common])


def test_a_down_server_is_one_line_and_exit_2_in_seconds(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.perf_counter()
    result = run(tmp_path, "--sut", f"openai-compat:m@{url}", "--graders", "refusal")
    assert result.exit_code == 2, result.output
    assert time.perf_counter() - started < 20
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: SUT openai-compat:m@") and "connection refused" in lines[-1]
    assert "Traceback" not in result.output
    store = Store(tmp_path / STORE_NAME)
    assert store.run_ids() == []  # nothing was started, so nothing is left half-done
    store.close()


def test_a_wrong_model_name_lists_what_the_server_serves(tmp_path):
    with MockServer(ServerState(models=("served-model",))) as server:
        result = run(tmp_path, "--sut", f"openai-compat:wrong-model@{server.url}", "--graders", "refusal")
        assert server.state.served.total() == 0  # no run request was sent
    assert result.exit_code == 2, result.output
    assert "does not serve model 'wrong-model' (it serves: served-model)" in result.output


def test_a_refused_key_is_one_line():
    with MockServer(ServerState(api_key="sk-right")) as server:
        sut = OpenAICompatSUT("remote", Endpoint(model="m", base_url=server.url), api_key="sk-wrong")

        async def check():
            try:
                await sut.preflight("SUT remote")
            finally:
                await sut.aclose()

        with pytest.raises(UserError, match="refused the API key"):
            asyncio.run(check())


def items(n: int) -> list[TestItem]:
    return [
        TestItem(uid=f"q{i}", hazard="vcr", persona="normal", text=f"question {i}", source="test")
        for i in range(n)
    ]


def queue_outcomes(adaptive: bool) -> tuple[list[str], OpenAICompatSUT]:
    """8 items at the default concurrency (32) and attempts (5) against a one-at-a-time server.

    Scaled down from what a user saw with `transformers serve` (60 s timeout, 16-43 s answers):
    0.3 s answers and a 1 s timeout, so 3 answers fit in one timeout and 8 queued do not.
    """
    with MockServer(ServerState(serial=True, latency_s=0.3)) as server:
        sut = OpenAICompatSUT(
            "serial",
            Endpoint(model="m", base_url=server.url),
            SUTOptions(timeout_s=1.0),
            adaptive_concurrency=adaptive,
            retry=RetryPolicy(base_s=0.2),
        )

        async def go():
            try:
                return await sut.respond(items(8))
            finally:
                await sut.aclose()

        responses = asyncio.run(go())
    return [r.outcome for r in responses], sut


def test_a_one_at_a_time_server_finishes_under_the_default_concurrency():
    outcomes, sut = queue_outcomes(adaptive=True)
    assert outcomes == ["ok"] * 8
    assert sut.limiter.decreases >= 1 and sut.limiter.lowest <= 2
    assert sut.metadata()["concurrency"]["lowest"] == sut.limiter.lowest


def test_without_adaptation_the_queue_eats_the_timeout():
    """The same server and settings with a fixed concurrency of 32: the check above can fail."""
    outcomes, _ = queue_outcomes(adaptive=False)
    assert outcomes.count("error") >= 3


def test_grader_http_400_fails_loudly_then_is_retried_by_the_next_run(tmp_path):
    guard_state = ServerState(models=("guard-model",))
    with MockServer() as suts, MockServer(guard_state) as guard:
        guard.script(*["400"] * 4)
        args = ["--sut", f"openai-compat:m@{suts.url}", "--graders", f"llama-guard@{guard.url}"]
        first = run(tmp_path, *args)
        assert first.exit_code == 3, first.output
        reason = 'HTTP 400: {"error": {"message": "unknown model"}}'
        assert f"4 verdicts of llama-guard failed: {reason}" in " ".join(first.output.split())
        assert "what to do: the server rejected the request" in first.output
        assert "llama-guard: 4/4 (" in first.output and "4 failed" in first.output  # progress line
        # The grader asked the server which model it serves (no model was named).
        assert {r["body"]["model"] for r in guard_state.requests} == {"guard-model"}
        second = run(tmp_path, *args)
    assert second.exit_code == 0, second.output
    assert "reused 4/4 stored responses and 0/4 stored verdicts" in second.output
    assert "failures" not in second.output
    store = Store(tmp_path / STORE_NAME)
    first_id, second_id = store.run_ids()
    record = store.run_info(first_id)["summary"]["record"]
    assert record["errors"][0]["stage"] == "grade" and record["errors"][0]["count"] == 4
    assert record["counts"]["verdicts_invalid"] == 4
    assert store.run_info(second_id)["summary"]["record"]["errors"] == []
    store.close()
    page = (tmp_path / first_id / "report.html").read_text()
    assert "This run finished with errors" in page and 'href="#errors"' in page
    assert "HTTP 400: {&#34;error&#34;: {&#34;message&#34;: &#34;unknown model&#34;}}" in page  # escaped
    assert "This run finished with errors" not in (tmp_path / second_id / "report.html").read_text()


def test_failed_responses_give_exit_3_with_the_reason_and_a_clean_rerun_exit_0(tmp_path):
    with MockServer() as server:
        server.script(*["500"] * 4)
        args = ["--sut", f"openai-compat:m@{server.url}", "--graders", "refusal", "--max-attempts", "1"]
        first = run(tmp_path, *args)
        assert first.exit_code == 3, first.output
        text = " ".join(first.output.split())
        assert 'failed: HTTP 500: {"error": {"message": "boom"}}' in text
        assert "no valid grade for openai-compat:m@" in text
        second = run(tmp_path, *args)
    assert second.exit_code == 0, second.output
    # Each run keeps its own record: the first lists the four failures under their reason, the
    # clean rerun lists none (its items are retried, not marked as failed again).
    records = {
        json.loads(path.read_text())["run_id"]: json.loads(path.read_text())
        for path in tmp_path.glob("*/record.json")
    }
    first_id = next(
        line.split()[1].rstrip(":") for line in first.output.splitlines() if line.startswith("run ")
    )
    second_id = next(
        line.split()[1].rstrip(":") for line in second.output.splitlines() if line.startswith("run ")
    )
    assert set(records) == {first_id, second_id}
    (failed,) = records[first_id]["errors"]
    assert failed["stage"] == "respond" and failed["count"] == 4
    assert failed["reason"].startswith("HTTP 500")
    assert records[second_id]["errors"] == []
    assert (
        records[second_id]["counts"]["responses_new"] == 4
        and records[second_id]["counts"]["response_errors"] == 0
    )


def test_timeouts_name_the_flag_to_change(tmp_path):
    with MockServer(ServerState(hang_s=5)) as server:
        server.script(*["timeout"] * 4)
        args = [
            "--sut", f"openai-compat:m@{server.url}", "--graders", "refusal",
            "--max-attempts", "1", "--timeout", "0.5",
        ]  # fmt: skip
        result = run(tmp_path, *args)
    assert result.exit_code == 3, result.output
    text = " ".join(result.output.split())
    assert "failed: timed out after 0.5s" in text and "raise --timeout" in text


def test_a_resumed_run_keeps_its_first_start_and_sums_its_legs(tmp_path):
    """Ctrl-C (a real SIGINT to a real process) in the middle of a run against a real server,
    then --resume: the record's start is the first leg's and its wall time the sum of both."""
    with MockServer(ServerState(hang_s=60)) as server:
        server.script("ok", "ok", "timeout", "timeout")
        command = [
            sys.executable, "-m", "modelbench.cli", "run", "--sut", f"openai-compat:m@{server.url}",
            "--graders", "refusal", "--max-items", "6", "--run-dir", str(tmp_path), "--timeout", "60",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while server.state.served["timeout"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the first leg lasts at least this long
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 130, out + err
        run_id = err.split("--resume ", 1)[1].split()[0]
        resumed = CliRunner().invoke(main, ["run", "--resume", run_id, "--run-dir", str(tmp_path)])
    assert resumed.exit_code == 0, resumed.output
    record = json.loads((tmp_path / run_id / "record.json").read_text())
    timing = record["timing"]
    first, second = timing["legs"]
    assert first["status"] == "interrupted" and second["status"] == "finished"
    assert timing["started_at"] == first["started_at"] <= second["started_at"]
    assert first["wall_s"] >= 1.0
    assert timing["wall_s"] == pytest.approx(first["wall_s"] + second["wall_s"], abs=0.01)


def test_an_api_key_a_server_echoes_back_is_never_stored_or_shown(tmp_path, monkeypatch):
    secret = "sk-SECRET-0123456789abcdef"
    monkeypatch.setenv("OPENAI_COMPAT_API_KEY", secret)
    with MockServer() as server:
        server.script(*["400_echo"] * 4)
        result = run(tmp_path, "--sut", f"openai-compat:m@{server.url}", "--graders", "refusal")
        assert server.state.requests[0]["headers"]["authorization"] == f"Bearer {secret}"
    assert result.exit_code == 3, result.output
    assert '"authorization": "Bearer [redacted]"' in result.output
    assert secret not in result.output
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_reasons_group_failures_that_differ_only_in_numbers():
    from rich.console import Console

    from modelbench import ErrorTally, reason_of
    from modelbench.reports import print_errors

    tally = ErrorTally()
    for i in range(40):
        asked = f"you asked for {4100 + i} tokens"
        message = f"HTTP 400: context length 4096 exceeded: {asked} (gave up after 1 attempt)"
        tally.add("respond", "sut", message, f"q{i}")
    for i in range(7):
        tally.add("grade", "judge", f"HTTP 500: failure kind {chr(65 + i)}x", f"q{i}")
    groups = tally.groups()
    assert (
        groups[0].count == 40
        and groups[0].reason == "HTTP 400: context length N exceeded: you asked for N tokens"
    )
    assert groups[0].example.endswith("4100 tokens (gave up after 1 attempt)")  # the example keeps detail
    assert reason_of("HTTP 404: The model `llama3.1-8b` does not exist") == (
        "HTTP 404: The model `llama3.1-8b` does not exist"
    )
    console = Console(width=200, record=True)
    print_errors(groups, [], console)
    text = console.export_text()
    assert "47 failures in this run" in text and "... and 3 more failures under 3 other reasons" in text


def test_failure_lines_count_one_failure_in_the_singular():
    from modelbench import ErrorTally, error_lines

    tally = ErrorTally()
    tally.add("respond", "sut", "HTTP 500: boom", "q1")
    tally.add("grade", "judge", "HTTP 500: bang", "q1")
    tally.add("grade", "judge", "HTTP 500: bang", "q2")
    lines = error_lines(tally.groups())
    assert "1 response from sut failed: HTTP 500: boom" in lines
    assert "2 verdicts of judge failed: HTTP 500: bang" in lines


def test_resuming_a_finished_run_changes_nothing_and_resume_takes_no_run_options(tmp_path):
    with MockServer() as server:
        assert run(tmp_path, "--sut", f"openai-compat:m@{server.url}", "--graders", "refusal").exit_code == 0
    store = Store(tmp_path / STORE_NAME)
    try:
        run_id = store.finished_run_ids()[-1]
        legs = len(store.run_timing(run_id)["legs"])
    finally:
        store.close()
    again = CliRunner().invoke(main, ["run", "--resume", run_id, "--run-dir", str(tmp_path)])
    assert again.exit_code == 0 and f"run {run_id} already finished: nothing to resume" in again.output
    store = Store(tmp_path / STORE_NAME)
    try:
        assert len(store.run_timing(run_id)["legs"]) == legs  # no new leg
    finally:
        store.close()
    changed = CliRunner().invoke(
        main, ["run", "--resume", run_id, "--max-items", "3", "--run-dir", str(tmp_path)]
    )
    assert changed.exit_code == 2
    assert "--resume finishes a run with its own settings: drop --max-items" in " ".join(
        changed.output.split()
    )


def test_a_reason_every_failure_shares_keeps_the_servers_numbers():
    from modelbench import ErrorTally, error_lines

    tally = ErrorTally()
    for i in range(3):
        tally.add("respond", "sut", "invalid_response: non-JSON body: <html>502 Bad Gateway</html>", f"q{i}")
    tally.add("respond", "sut", "HTTP 400: you asked for 4100 tokens", "q4")
    tally.add("respond", "sut", "HTTP 400: you asked for 4101 tokens", "q5")
    lines = error_lines(tally.groups())
    assert (
        "3 responses from sut failed: invalid_response: non-JSON body: <html>502 Bad Gateway</html>" in lines
    )
    assert "2 responses from sut failed: HTTP 400: you asked for N tokens" in lines


def test_a_run_through_20_percent_mixed_transient_faults_exits_0_with_every_item_answered(tmp_path):
    # Seeded: 429s with Retry-After, 500s, stalls past the timeout, and 200s with an HTML page.
    state = ServerState(fault_rate=0.2, seed=11, retry_after_s=0.01, hang_s=3.0, record_requests=False)
    with MockServer(state) as server:
        args = ["run", "--sut", f"openai-compat:m@{server.url}", "--graders", "refusal", "--max-items", "48"]
        args += ["--run-dir", str(tmp_path), "--timeout", "0.5", "--max-attempts", "6"]
        result = CliRunner().invoke(main, args)
        faults = {k: v for k, v in server.state.served.items() if k != "ok"}
    assert result.exit_code == 0, result.output
    assert "garbage" in faults and "timeout" in faults and sum(faults.values()) >= 5  # the schedule bit
    record = json.loads(next(tmp_path.glob("*/record.json")).read_text())
    assert record["counts"]["response_errors"] == 0 and record["scores"][0]["overall"]["n_valid"] == 48


def test_a_server_that_always_answers_html_exits_3_with_the_reason_within_the_attempt_limit(tmp_path):
    with MockServer() as server:
        server.script(*["garbage"] * 12)
        args = ["--sut", f"openai-compat:m@{server.url}", "--graders", "refusal"]
        result = run(tmp_path, *args, "--max-attempts", "3", "--no-preflight")
        asked = server.state.served["garbage"] + server.state.served["ok"]
    assert result.exit_code == 3, result.output
    text = " ".join(result.output.split())
    assert "invalid_response: non-JSON body: <html>502 Bad Gateway</html>" in text
    assert asked == 12  # 4 items x 3 attempts, and no more
