"""The SUT registry file: its YAML schema, and where a local model's weights are.

`registry.yaml` (and a user's `--sut-config`) names SUTs: an adapter, and either weights (inside a
package, at a path, or in the Hugging Face cache) or an endpoint, with the metadata that reports
and leaderboards show (dense base, compression, parameters, paper). This module reads and checks
that file; `modelbench.suts.registry` turns specs and entries into SUTs. Weights are located by
the adapter that loads them (`Weights.locate`), not by `make_sut`: a named SUT is one lookup
away from its adapter.
"""

from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from modelbench.errors import UserError
from modelbench.suts.embedded import embedded_file
from modelbench.suts.options import Endpoint

# What an entry holds that is not metadata: how to build the SUT, not what to show about it.
BUILD_FIELDS = frozenset({"weights", "adapter", "endpoint", "module"})


class EmbeddedWeights(BaseModel):
    package: str
    file: str


class Weights(BaseModel):
    """Where a local model's weights are: inside a package, at a path, or in the HF cache."""

    embedded: EmbeddedWeights | None = None
    path: str | None = None
    hf_repo: str | None = None
    revision: str | None = None

    def locate(self) -> Path:
        if self.embedded is not None:
            return embedded_file(self.embedded.package, self.embedded.file)
        if self.path is not None:
            return Path(self.path).expanduser()
        if self.hf_repo is not None:
            return _from_hf_cache(self.hf_repo, self.revision)
        raise UserError("registry entry names no weights")


def _from_hf_cache(repo: str, revision: str | None) -> Path:
    """The cached snapshot, never a download: runs are offline, so absent weights fail fast."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        at = f"{repo}@{revision}" if revision else repo
        raise UserError(
            f"weights for {at} not found: looked in the Hugging Face cache ({HF_HUB_CACHE}); "
            "download them there, give --sut hf:/path/to/weights, or serve the model and use "
            "openai-compat:MODEL@URL"
        ) from None


class SUTEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    adapter: str
    # A module that registers `adapter` when imported (an adapter outside this package and its
    # plugins): imported on first use, in whatever process builds the SUT (a Ray worker too).
    module: str | None = None
    display_name: str = ""
    weights: Weights | None = None
    endpoint: Endpoint | None = None
    params: int | None = None
    dense_base: str | None = None
    compression: str | None = None
    sparsity: float | None = None
    paper: str | None = None
    notes: str | None = None

    def locate(self) -> Path:
        if self.weights is None:
            raise UserError("registry entry names no weights")
        return self.weights.locate()


def _parse_registry(text: str, source: str) -> dict[str, SUTEntry]:
    try:
        data = yaml.safe_load(text) or {}
        entries = data.get("suts", {}).items()
    except (yaml.YAMLError, AttributeError) as exc:
        raise UserError(f"invalid SUT registry {source}: {str(exc).splitlines()[0]}") from None
    parsed = {}
    for name, entry in entries:
        try:
            parsed[name] = SUTEntry.model_validate(entry)
        except ValidationError as exc:
            # Every problem with its field, not pydantic's first line ("1 validation error for ...").
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'entry'}: {error['msg']}"
                for error in exc.errors()
            )
            raise UserError(f"invalid SUT registry {source}: entry '{name}': {problems}") from None
    return parsed


@lru_cache(maxsize=1)
def builtin_registry() -> dict[str, SUTEntry]:
    text = resources.files("modelbench.suts").joinpath("registry.yaml").read_text("utf-8")
    return _parse_registry(text, "registry.yaml")


def load_registry(extra: Path | None = None) -> dict[str, SUTEntry]:
    registry = dict(builtin_registry())
    if extra is not None:
        try:
            text = Path(extra).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read SUT config {extra}: {exc}") from None
        registry.update(_parse_registry(text, str(extra)))
    return registry
