"""Adaptive concurrency for API calls: AIMD, as TCP and most API clients do it.

A server that answers one request at a time (a local `transformers serve`, llama.cpp with one
slot, a loaded vLLM) queues whatever we send. With 32 requests in flight, the last one waits 32
answers' time, times out, and, since servers rarely cancel abandoned work, still costs the server
its full generation. Every client-side timeout then makes the next ones likelier: the queue eats
the run. A fixed concurrency cannot know the server; this limiter learns it:

- **Additive increase**: each success raises the limit by 1/limit (about one more request in flight
  per round trip), up to the configured maximum (`--concurrency`).
- **Multiplicative decrease** on a congestion signal (a timeout, HTTP 429 or 503): the limit
  halves, and is also capped by Little's law: what the server completed during the last `timeout_s`
  is the most that can be in flight for the next request to finish within the timeout.
  Like TCP, one decrease per round trip: signals from requests sent before the last decrease
  describe the old limit and are ignored, except that Little's cap still applies to them.

The timeout itself counts from when a request is sent: a request waits for a slot here, before
its clock starts, and the HTTP client holds one connection per slot, so nothing queues unseen.
"""

import asyncio
import time
from collections import deque
from types import TracebackType


class AdaptiveLimiter:
    """At most `limit` requests in flight; the limit adapts between 1 and `maximum`."""

    def __init__(self, maximum: int, timeout_s: float, adaptive: bool = True):
        self.maximum = max(1, maximum)
        self.timeout_s = timeout_s
        self.adaptive = adaptive
        self.limit = float(self.maximum)
        self.in_flight = 0
        self.decreases = 0
        self.lowest = self.maximum
        self._last_decrease = float("-inf")
        self._completions: deque[float] = deque()
        self._cond: asyncio.Condition | None = None

    @property
    def current(self) -> int:
        return max(1, int(self.limit))

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> float:
        """Wait for a slot; returns the send time (used to date congestion signals)."""
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self.in_flight < self.current)
            self.in_flight += 1
        return time.monotonic()

    async def release(self, sent_at: float, outcome: str) -> None:
        """outcome: "ok" (an answer, any status that is not congestion), "congested" (timeout,
        429, 503) or "other" (a failure that says nothing about load, e.g. connection refused)."""
        now = time.monotonic()
        # The slot is free before anything that can wait: a cancelled release cannot leak it.
        self.in_flight -= 1
        if outcome == "ok":
            self._completions.append(now)
            self._forget_before(now - self.timeout_s)
            if self.adaptive:
                self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
        elif outcome == "congested" and self.adaptive:
            self._congested(sent_at, now)
        cond = self._condition()
        async with cond:
            cond.notify_all()

    def _forget_before(self, cutoff: float) -> None:
        while self._completions and self._completions[0] < cutoff:
            self._completions.popleft()

    def _congested(self, sent_at: float, now: float) -> None:
        self._forget_before(now - self.timeout_s)
        # Little's law: with throughput X, a request queued behind N others waits N / X seconds.
        # Half of what finished within one timeout keeps the queue well inside it.
        littles_cap = max(1.0, len(self._completions) / 2)
        limit = min(self.limit, littles_cap)
        if sent_at >= self._last_decrease:
            limit = min(limit, max(1.0, self.limit / 2))
            self._last_decrease = now
        if limit < self.limit:
            self.limit = limit
            self.decreases += 1
            self.lowest = min(self.lowest, self.current)

    def rebind(self) -> None:
        """Forget the asyncio primitives (bound to an event loop); keep what was learned."""
        self._cond = None
        self.in_flight = 0

    def slot(self) -> "_Slot":
        return _Slot(self)


class _Slot:
    """`async with limiter.slot() as slot:` then set `slot.outcome` before leaving."""

    def __init__(self, limiter: AdaptiveLimiter):
        self.limiter = limiter
        self.outcome = "other"
        self.sent_at = 0.0

    async def __aenter__(self) -> "_Slot":
        self.sent_at = await self.limiter.acquire()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.limiter.release(self.sent_at, self.outcome if exc_type is None else "other")
