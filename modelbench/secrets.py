"""API keys from the environment or a secrets file, never from command lines or configs.

A secrets file holds `NAME=value` lines. Because it holds credentials, it must not be readable
by group or others (like ssh's private keys); a looser file is refused rather than used.
Values never enter records, logs or reports: callers keep them out of fingerprints and metadata.
"""

import os
import re
import stat
from pathlib import Path

from modelbench.errors import UserError

SECRETS_FILE_ENV = "MODELBENCH_SECRETS_FILE"


def _read_secrets_file(path: Path) -> dict[str, str]:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise UserError(f"cannot read secrets file {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"secrets file {path} is readable by others; run: chmod 600 {path}")
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise UserError(f"{path}:{number}: expected NAME=value")
        name, value = line.split("=", 1)
        values[name.strip()] = value.strip().strip('"').strip("'")
    return values


def get_secret(name: str, secrets_file: Path | None = None) -> str | None:
    """The environment wins; then the secrets file (argument, or $MODELBENCH_SECRETS_FILE)."""
    if os.environ.get(name):
        return os.environ[name]
    path = secrets_file or (Path(os.environ[SECRETS_FILE_ENV]) if os.environ.get(SECRETS_FILE_ENV) else None)
    if path is None:
        return None
    return _read_secrets_file(path).get(name)


_CREDENTIAL = re.compile(
    r"(?i)(bearer\s+|api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+|\bsk-[A-Za-z0-9_\-]{8,}"
)


def redact(text: str, secret: str | None = None) -> str:
    """`text` without `secret` and without anything shaped like a bearer token or API key: for
    server messages bound for the console, a record, a report or the store (servers echo requests
    back in error bodies)."""
    if secret and len(secret) >= 4 and secret != "EMPTY":
        text = text.replace(secret, "[redacted]")
    return _CREDENTIAL.sub(lambda m: (m.group(1) or "") + "[redacted]", text)
