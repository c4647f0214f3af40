"""Where modelbench keeps what it can rebuild: `$MODELBENCH_CACHE`, else `~/.cache/modelbench`,
one folder per kind (exported ONNX evaluators, compressed checkpoints, compiled report templates).
Everything there is keyed by what made it, so deleting the folder only costs time."""

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """The folder for one kind of cached artefact (not created here)."""
    root = os.environ.get("MODELBENCH_CACHE") or Path.home() / ".cache" / "modelbench"
    return Path(root).expanduser() / kind
