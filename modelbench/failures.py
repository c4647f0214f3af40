"""What went wrong in a run, grouped by reason, with one example and what to do about it.

A run with 8 failed responses used to print "8 responses failed" and leave the reason ("timed out
after 60s, gave up after 5 attempts") in the SQLite store. Users act on reasons, not counts: a
timeout asks for a longer --timeout or fewer requests in flight, a refused connection for a
running server, HTTP 404 for the right model name. The engine tallies every failed response and
every invalid verdict here; the console, the record and the report show the same groups.
"""

import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from modelbench.secrets import redact

Stage = Literal["respond", "grade"]
MAX_REASON_CHARS = 160

_GAVE_UP = re.compile(r"\s*\(gave up after \d+ attempts?\)\s*$")
_PREFIXES = ("request failed: ", "judge failed: ")
_NUMBER = re.compile(r"(?<![\w.\-])\d+(?:\.\d+)?(?![\w.\-])")  # a number, not part of a name
CONSOLE_GROUPS = 5


class ErrorGroup(BaseModel):
    """Failures of one stage and source (a SUT or a grader) that share a reason."""

    stage: Stage
    source: str
    reason: str
    count: int
    example_item: str
    example: str
    hint: str
    # The reason with the server's own numbers, when every failure of the group has the same
    # ("<html>502 Bad Gateway", not "<html>N Bad Gateway"); None when they differ in numbers.
    shown: str | None = None


def reason_of(message: str, numbers: bool = False) -> str:
    """The part of an error message that failures share, without per-item detail (`numbers`:
    keep the server's numbers, for showing a reason that every failure of a group shares)."""
    text = " ".join((message or "unknown error").split())
    text = _GAVE_UP.sub("", text)
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :]
    if "ConnectionRefusedError" in text or "Connection refused" in text:
        return "connection refused"
    if text.startswith("error: "):
        text = "the grader raised " + text[len("error: ") :]
    elif text.startswith(("no safe/unsafe probability", "malformed response")):
        text = text.split(":", 1)[0]
    elif not text.startswith(("HTTP ", "timed out", "connection error", "invalid_response", "empty_choices")):
        # A grader's free-text answer with no verdict in it: the text itself is the example.
        text = "no verdict could be read from the answer"
    # Per-item detail (token counts, ids, positions) would split one reason into as many groups as
    # items: numbers in a server's message become N; the status code and our own wording stay.
    head, sep, body = text.partition(": ") if text.startswith("HTTP ") else ("", "", text)
    if not text.startswith("timed out") and not numbers:
        body = _NUMBER.sub("N", body)
    text = head + sep + body
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


def hint_for(stage: Stage, reason: str) -> str:
    """What the user can do about a reason; every failed item is retried by the next run."""
    if reason.startswith("timed out"):
        return (
            "the server answered slower than --timeout; concurrency adapts down on timeouts, so raise "
            "--timeout (or lower --concurrency) if even one request at a time is too slow"
        )
    if reason == "connection refused" or reason.startswith("connection error"):
        return "is the server running at that URL? start it and run the same command again"
    status = re.match(r"HTTP (\d{3})", reason)
    if status:
        code = int(status.group(1))
        if code == 429:
            return "rate limited: lower --concurrency or raise --max-attempts"
        if code in (401, 403):
            return "the server refused the API key: check the key's environment variable or --secrets"
        if code in (400, 404, 422):
            return "the server rejected the request: check the model name and the URL"
        if code >= 500:
            return "the server failed; run the same command again to retry these items"
    if reason.startswith(("invalid_response", "empty_choices")):
        return "the server's answer was not a chat completion; check that the URL is an OpenAI-compatible /v1"
    if stage == "grade":
        return "the grader's answers could not be used; check the grader's model and server"
    return "run the same command again to retry these items"


class ErrorTally:
    """Failures as they happen, grouped when the run ends."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str, str], ErrorGroup] = {}

    def add(self, stage: Stage, source: str, message: str | None, item_uid: str) -> None:
        message = redact(message or "")  # a backstop: adapters redact their own secrets first
        reason = reason_of(message)
        exact = reason_of(message, numbers=True)
        key = (stage, source, reason)
        group = self._groups.get(key)
        if group is not None and group.shown != exact:
            group.shown = None
        if group is None:
            example = " ".join((message or "").split())[:400]
            self._groups[key] = ErrorGroup(
                stage=stage,
                source=source,
                reason=reason,
                count=1,
                example_item=item_uid,
                example=example,
                hint=hint_for(stage, reason),
                shown=exact,
            )
        else:
            group.count += 1

    @property
    def total(self) -> int:
        return sum(g.count for g in self._groups.values())

    def groups(self) -> list[ErrorGroup]:
        order = lambda g: (g.stage != "respond", -g.count, g.source, g.reason)  # noqa: E731
        return sorted(self._groups.values(), key=order)


def error_lines(groups: Iterable[ErrorGroup]) -> list[str]:
    """Plain lines for a console or a log: counts by reason, one example, what to do."""
    lines = []
    for g in groups:
        noun = "response" if g.stage == "respond" else "verdict"
        what = f"{noun}{'' if g.count == 1 else 's'} {'from' if g.stage == 'respond' else 'of'}"
        lines.append(f"{g.count} {what} {g.source} failed: {g.shown or g.reason}")
        if g.example and g.example != g.reason:
            lines.append(f"    e.g. item {g.example_item}: {g.example}")
        lines.append(f"    what to do: {g.hint}")
    return lines
