"""Errors that reach the user as one line and exit code 2.

Anything raised as a `UserError` is a problem with what the user asked for (a name, a path, a
file); the CLI prints its message alone, without a traceback, and exits 2. Everything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line."""

    exit_code = 2
