"""Stable content hashes for store keys and item uids.

Keys must not change between Python versions or runs, so we hash a canonical JSON encoding
(sorted keys, no whitespace) rather than anything repr- or pickle-based.
"""

import hashlib
import json
from pathlib import Path
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def stable_hash(*parts: Any, length: int = 32) -> str:
    """Hex digest of the canonical JSON of `parts`, truncated to `length` characters."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()
    return digest[:length]


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (model files are hundreds of MB): how
    provenance and records name exactly which file was used."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
