"""Against a server nobody here wrote: `transformers serve` (transformers[serving]) with a tiny
random-weight model, on 127.0.0.1. Our mock server could agree with our client by accident; this
one checks that preflight, runs and failure reports hold against a real OpenAI-compatible API.
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelbench.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None,
    reason="transformers[serving] is not installed (make install adds it)",
)
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, served model name, process) of `transformers serve` on the tiny model."""
    from conftest import build_tiny_llama

    model = build_tiny_llama(tmp_path_factory.mktemp("served") / "tiny")
    command = shutil.which("transformers", path=str(Path(os.sys.executable).parent)) or "transformers"
    port = free_port()
    log = (tmp_path_factory.mktemp("serve-log") / "serve.log").open("w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [command, "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"transformers serve did not start: see {log.name}")
        time.sleep(0.5)
    yield f"{url}/v1", str(model), process
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def run(tmp_path, sut: str, *extra: str):
    args = ["run", "--sut", sut, "--graders", "refusal", "--max-items", "4", "--max-new-tokens", "4"]
    return CliRunner().invoke(main, [*args, "--run-dir", str(tmp_path), *extra])


def test_a_run_against_transformers_serve_is_clean(tmp_path, served):
    url, model, _ = served
    result = run(tmp_path, f"openai-compat:{model}@{url}")
    assert result.exit_code == 0, result.output
    assert "reused 0/4 stored responses" in result.output and "failures" not in result.output


def test_a_model_transformers_serve_does_not_serve_is_exit_2_naming_the_one_it_does(tmp_path, served):
    url, model, _ = served
    result = run(tmp_path, f"openai-compat:no-such-model@{url}")
    assert result.exit_code == 2, result.output
    assert f"does not serve model 'no-such-model' (it serves: {model})" in result.output
