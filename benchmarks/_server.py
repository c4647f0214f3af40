"""Start the mock OpenAI-compatible server in its own process, as a real peer would be."""

import subprocess
import sys
from contextlib import contextmanager


@contextmanager
def mock_server_process(latency_s: float = 0.1, fault_rate: float = 0.0, seed: int = 0):
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "modelbench.testing.mock_server", "--port", "0",
            "--latency", str(latency_s), "--fault-rate", str(fault_rate), "--seed", str(seed),
            "--retry-after", "0.05", "--hang", "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"mock server did not start: {line!r}")
        yield line.removeprefix("listening on ")
    finally:
        proc.terminate()
        proc.wait(5)
