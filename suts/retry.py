"""Retry policy for API calls: exponential backoff with full jitter, Retry-After honoured.

Full jitter (a uniform draw up to the exponential cap) spreads retries from many concurrent
requests so they do not hit a recovering server in lockstep. A server's Retry-After, when it
sends one, wins over our own guess, within a ceiling so a bogus header cannot stall a run.
"""

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from pydantic import BaseModel


class RetryPolicy(BaseModel):
    max_attempts: int = 5
    base_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        cap = min(self.max_backoff_s, self.base_s * 2 ** (attempt - 1))
        return (rng or random).uniform(0, cap)

    def wait(self, attempt: int, retry_after: str | None, rng: random.Random | None = None) -> float:
        hinted = parse_retry_after(retry_after)
        if hinted is not None:
            return min(hinted, self.max_retry_after_s)
        return self.backoff(attempt, rng)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None when absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)
