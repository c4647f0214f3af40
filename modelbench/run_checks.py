"""Checks before and around a run's work: a writable run dir, a reachable model, a store that
fails as one line. Each turns a failure into a `UserError` before any work is done or lost."""

import asyncio
import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelbench.errors import UserError
from modelbench.graders import Evaluator
from modelbench.suts import SUT


def ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create run dir {folder}: {exc.strerror or exc}") from None
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"run dir {folder} is not writable: {exc.strerror or exc}") from None


@contextmanager
def storage_errors(store_path: Path) -> Iterator[None]:
    """A full disk or a broken store becomes one line; committed work stays where it is."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise UserError(f"store {store_path} failed: {exc}; work committed before this is kept") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise UserError(f"cannot write under {store_path.parent}: {exc.strerror}") from None
        raise


def preflight(suts: list[SUT], evaluators: list[Evaluator]) -> None:
    """One cheap request per API SUT and API grader (the model list, or a one-token answer), all
    at once: a wrong URL, a down server, a wrong model name or a refused key is one line and
    exit 2 in seconds, before the run is announced or recorded. Graders that discover what they
    need (the model a server serves) settle it here, so their fingerprints are final."""

    async def check() -> None:
        try:
            results = await asyncio.gather(
                *(sut.preflight(f"SUT {sut.uid}") for sut in suts),
                *(evaluator.preflight() for evaluator in evaluators),
                return_exceptions=True,
            )
        finally:
            for part in [*suts, *evaluators]:  # clients belong to this event loop; the run opens its own
                await part.aclose()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    asyncio.run(check())
