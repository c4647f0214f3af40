"""Turn a SUT spec (a registry name or `hf:PATH`) into a SUT object.

Specs without a registry entry keep the command line self-contained; named entries carry the
metadata (dense base, compression, parameters, paper) that reports and leaderboards show.
"""

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from modelbench.errors import UserError
from modelbench.suts.base import SUT
from modelbench.suts.embedded import embedded_file

DEFAULT_SUT = "smollm2-135m"


class EmbeddedWeights(BaseModel):
    package: str
    file: str


class Weights(BaseModel):
    embedded: EmbeddedWeights | None = None
    path: str | None = None


class SUTEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    adapter: str
    display_name: str = ""
    weights: Weights
    params: int | None = None
    dense_base: str | None = None
    compression: str | None = None
    sparsity: float | None = None
    paper: str | None = None
    notes: str | None = None

    def locate(self) -> Path:
        if self.weights.embedded is not None:
            return embedded_file(self.weights.embedded.package, self.weights.embedded.file)
        if self.weights.path is not None:
            return Path(self.weights.path).expanduser()
        raise UserError("registry entry names no weights")


class SUTOptions(BaseModel):
    """Run-time settings that apply to every local SUT of a run."""

    max_new_tokens: int = 128
    batch_size: int | None = None
    device: str | None = None


def _parse_registry(text: str, source: str) -> dict[str, SUTEntry]:
    try:
        data = yaml.safe_load(text) or {}
        return {name: SUTEntry.model_validate(entry) for name, entry in data.get("suts", {}).items()}
    except (yaml.YAMLError, ValidationError, AttributeError) as exc:
        raise UserError(f"invalid SUT registry {source}: {str(exc).splitlines()[0]}") from None


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


def make_sut(
    spec: str, options: SUTOptions | None = None, registry: dict[str, SUTEntry] | None = None
) -> SUT:
    options = options or SUTOptions()
    registry = registry if registry is not None else load_registry()
    if spec.startswith("hf:"):
        path = Path(spec[3:]).expanduser()
        if not spec[3:]:
            raise UserError("empty path in SUT spec 'hf:' (use hf:/path/to/model)")
        return _huggingface(spec, path, options, {"spec": spec})
    entry = registry.get(spec)
    if entry is None:
        known = ", ".join(sorted(registry))
        raise UserError(f"unknown SUT '{spec}' (known: {known}; or hf:/path/to/model)")
    if entry.adapter != "huggingface":
        raise UserError(f"SUT '{spec}': unsupported adapter '{entry.adapter}'")
    meta = entry.model_dump(exclude={"weights", "adapter"}, exclude_none=True)
    return _huggingface(spec, entry.locate(), options, meta)


def _huggingface(uid: str, path: Path, options: SUTOptions, meta: dict[str, Any]) -> SUT:
    from modelbench.suts.hf_loading import check_model_path
    from modelbench.suts.huggingface import HuggingFaceSUT

    check_model_path(path)
    return HuggingFaceSUT(
        uid=uid,
        model_path=path,
        max_new_tokens=options.max_new_tokens,
        batch_size=options.batch_size,
        device=options.device,
        metadata=meta,
    )
