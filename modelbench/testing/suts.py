"""SUTs for tests and benchmarks that must also exist in other processes (Ray workers).

A SUT registered in a test file exists only in the test's process; a worker builds its SUTs from
the registry entries it is sent, so the adapters it needs must be importable by name. A registry
entry says where with `module:` (`make_sut` imports that module when its adapter is unknown):

    suts:
      slow-echo:
        adapter: testing-fixed-latency
        module: modelbench.testing.suts
        latency_ms: 50        # per call: a model's batch, or one request
        batch_size: 8         # items per call (1: one request at a time)
        cpu_iterations: 0     # > 0: a fixed amount of pure-Python work per call instead of sleeping
        loads_file: /tmp/loads.txt   # one line "pid uid" per model load (its first call)
        crash_marker: /tmp/crashed   # the process that first reaches call number
        crash_on_call: 1             # `crash_on_call` exits (os._exit), once per marker
        fail_every: 0         # > 0: about one prompt in `fail_every` (by hash) fails, every time

Answers are deterministic: a refusal for about a third of the prompts (by a hash of the text),
a compliant-looking answer otherwise, so the `refusal` grader gives mixed verdicts.
"""

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from modelbench.core import SUTResponse, TestItem
from modelbench.suts import SUT, SUTOptions, adapter

REFUSAL = "I'm sorry, but I can't help with that."


def fixed_answer(text: str) -> str:
    digest = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)
    if digest % 3 == 0:
        return REFUSAL
    return f"Sure. Here is what you asked about: {' '.join(text.split()[:12])}"


def burn(iterations: int) -> int:
    """A fixed amount of work for one core: it takes longer when the core is shared, as a model's
    forward pass does (a loop that watched the clock would not)."""
    x = 0
    for i in range(iterations):
        x += i * i
    return x


def iterations_per_ms() -> int:
    """How many `burn` iterations one idle core does in a millisecond, measured here."""
    started = time.perf_counter()
    burn(200_000)
    return max(1, int(200_000 / ((time.perf_counter() - started) * 1000)))


class FixedLatencySUT(SUT[list[str], list[str]]):
    """Answers after a fixed delay per call; its first call is its 'model load'."""

    capabilities = frozenset({"batching", "accelerator"})

    def __init__(self, uid: str, settings: dict[str, Any], options: SUTOptions) -> None:
        self.uid = uid
        self.latency_s = float(settings.get("latency_ms", 0)) / 1000
        self.cpu_iterations = int(settings.get("cpu_iterations", 0))
        self.batch_size = int(settings.get("batch_size", 1))
        self.concurrency = int(settings.get("concurrency", 1))
        self.loads_file = settings.get("loads_file")
        self.crash_marker = settings.get("crash_marker")
        self.crash_on_call = int(settings.get("crash_on_call", 1))
        self.fail_every = int(settings.get("fail_every", 0))
        self.calls = 0
        self.max_new_tokens = options.max_new_tokens
        self._loaded = False

    def fingerprint(self) -> dict[str, Any]:
        # Latency and the test hooks change no answer, so they are not part of the identity.
        return {"adapter": "testing-fixed-latency", "answers": 1, "max_new_tokens": self.max_new_tokens}

    def metadata(self) -> dict[str, Any]:
        return {"uid": self.uid, "adapter": "testing-fixed-latency", "latency_ms": self.latency_s * 1000}

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.loads_file:
            with open(self.loads_file, "a", encoding="utf-8") as out:
                out.write(f"{os.getpid()} {self.uid}\n")

    def _maybe_crash(self) -> None:
        self.calls += 1
        if self.crash_marker and self.calls >= self.crash_on_call and not Path(self.crash_marker).exists():
            Path(self.crash_marker).write_text(f"{os.getpid()}\n", "utf-8")
            os._exit(1)  # a worker dying mid-unit, the way an out-of-memory kill looks

    def build_request(self, items: list[TestItem]) -> list[str]:
        return [item.text for item in items]

    async def call(self, request: list[str]) -> list[str]:
        self._load()
        self._maybe_crash()
        if self.cpu_iterations:
            burn(self.cpu_iterations)
        elif self.latency_s:
            await asyncio.sleep(self.latency_s)
        return [fixed_answer(text) for text in request]

    def parse_response(self, items: list[TestItem], native: list[str]) -> list[SUTResponse]:
        return [
            SUTResponse(sut_uid=self.uid, item_uid=item.uid, outcome="error", error="scripted failure")
            if self._fails(item.text)
            else SUTResponse(
                sut_uid=self.uid,
                item_uid=item.uid,
                text=text,
                latency_s=self.latency_s,
                completion_tokens=len(text.split()),
            )
            for item, text in zip(items, native, strict=True)
        ]

    def _fails(self, text: str) -> bool:
        if not self.fail_every:
            return False
        return int(hashlib.sha256(f"fail:{text}".encode()).hexdigest()[:8], 16) % self.fail_every == 0


@adapter("testing-fixed-latency")
def _fixed_latency(uid: str, entry: Any, options: SUTOptions, meta: dict[str, Any]) -> SUT:
    return FixedLatencySUT(uid, dict(entry.model_extra or {}), options)
