"""Turn a SUT spec into a SUT object.

Specs (grammar in `modelbench.specs`, parsed there once): a registry name; `hf:/path/to/model_dir`
or `hf:/path/to/file.gguf`; `openai:MODEL` (the OpenAI API, key from OPENAI_API_KEY);
`openai-compat:MODEL@BASE_URL` (any OpenAI-compatible server; key from OPENAI_COMPAT_API_KEY when
the server wants one); `BASE+TRANSFORM=ARG...` (a local base compressed on the fly).

Specs without a registry entry keep the command line self-contained; named entries carry the
metadata (dense base, compression, parameters, paper) that reports and leaderboards show.
"""

from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from modelbench.errors import UserError
from modelbench.specs import (
    CompressedSpec,
    HFSpec,
    OpenAICompatSpec,
    OpenAISpec,
    RegistrySpec,
    SUTSpec,
    as_sut_spec,
)
from modelbench.suts.base import SUT
from modelbench.suts.embedded import embedded_file
from modelbench.suts.options import Endpoint, SUTOptions

DEFAULT_SUT = "smollm2-135m"


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


OPENAI_BASE_URL = "https://api.openai.com/v1"


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


def make_sut(
    spec: str | SUTSpec, options: SUTOptions | None = None, registry: dict[str, SUTEntry] | None = None
) -> SUT:
    """A SUT for a spec (text or parsed, see `modelbench.specs`); its uid is the text as given."""
    options = options or SUTOptions()
    registry = registry if registry is not None else load_registry()
    uid = spec if isinstance(spec, str) else str(spec)
    parsed = as_sut_spec(spec)
    return SPEC_KINDS[type(parsed)](uid, parsed, options, registry)


# -- one maker per kind of spec, looked up by the spec's class -----------------------------------

# (uid, parsed spec, options, registry) -> SUT
SpecMaker = Callable[[str, Any, SUTOptions, dict[str, SUTEntry]], SUT]


def _named(uid: str, spec: RegistrySpec, options: SUTOptions, registry: dict[str, SUTEntry]) -> SUT:
    entry = registry.get(spec.name)
    if entry is None:
        known = ", ".join(sorted(registry))
        raise UserError(
            f"unknown SUT '{uid}' (known: {known}; or hf:PATH, openai:MODEL, openai-compat:MODEL@URL)"
        )
    factory = ADAPTERS.get(entry.adapter)
    if factory is None and entry.module:
        _import_adapter_module(uid, entry.module)
        factory = ADAPTERS.get(entry.adapter)
    if factory is None:
        from modelbench.plugins import load_plugins

        load_plugins()  # an installed plugin may bring the adapter
        factory = ADAPTERS.get(entry.adapter)
    if factory is None:
        raise UserError(f"SUT '{uid}': unsupported adapter '{entry.adapter}' (known: {', '.join(ADAPTERS)})")
    meta = entry.model_dump(exclude={"weights", "adapter", "endpoint", "module"}, exclude_none=True)
    return factory(uid, entry, options, meta)


def _import_adapter_module(uid: str, module: str) -> None:
    from importlib import import_module

    try:
        import_module(module)
    except ImportError as exc:
        raise UserError(f"SUT '{uid}': cannot import module '{module}' for its adapter: {exc}") from None


def _hf_path(uid: str, spec: HFSpec, options: SUTOptions, registry: dict[str, SUTEntry]) -> SUT:
    return _huggingface(uid, Path(spec.path).expanduser(), options, {"spec": uid})


def _openai(uid: str, spec: OpenAISpec, options: SUTOptions, registry: dict[str, SUTEntry]) -> SUT:
    endpoint = Endpoint(base_url=OPENAI_BASE_URL, model=spec.model, api_key_env="OPENAI_API_KEY")
    return _openai_compat(uid, endpoint, options, {"spec": uid}, key_required=True)


def _openai_compat_url(
    uid: str, spec: OpenAICompatSpec, options: SUTOptions, registry: dict[str, SUTEntry]
) -> SUT:
    endpoint = Endpoint(base_url=spec.base_url, model=spec.model, api_key_env="OPENAI_COMPAT_API_KEY")
    return _openai_compat(uid, endpoint, options, {"spec": uid}, key_required=False)


# -- adapters: a registry entry's `adapter` names one; each factory imports its SUT module lazily ------

# (uid, registry entry, options, metadata) -> SUT
AdapterFactory = Callable[[str, SUTEntry, SUTOptions, dict[str, Any]], SUT]
ADAPTERS: dict[str, AdapterFactory] = {}


def adapter(name: str) -> Callable[[AdapterFactory], AdapterFactory]:
    """Register the decorated factory for registry entries with `adapter: NAME`."""

    def register(factory: AdapterFactory) -> AdapterFactory:
        if name in ADAPTERS:
            raise ValueError(f"SUT adapter '{name}' is already registered")
        ADAPTERS[name] = factory
        return factory

    return register


@adapter("huggingface")
def _huggingface_entry(uid: str, entry: SUTEntry, options: SUTOptions, meta: dict[str, Any]) -> SUT:
    return _huggingface(uid, entry.locate(), options, meta)


@adapter("openai_compat")
def _openai_compat_entry(uid: str, entry: SUTEntry, options: SUTOptions, meta: dict[str, Any]) -> SUT:
    if entry.endpoint is None:
        raise UserError(f"SUT '{uid}': an openai_compat entry needs an endpoint")
    return _openai_compat(uid, entry.endpoint, options, meta, key_required=False)


def _compressed(uid: str, spec: CompressedSpec, options: SUTOptions, registry: dict[str, SUTEntry]) -> SUT:
    """`BASE+TRANSFORM=ARG`: BASE must be a local model (a registry entry or hf:PATH)."""
    from modelbench.suts.compressed import CompressedSUT
    from modelbench.suts.hf_loading import check_model_path

    base = spec.base
    if isinstance(base, HFSpec):
        base_path, meta = Path(base.path).expanduser(), {}
    elif base.name in registry and registry[base.name].adapter == "huggingface":
        entry = registry[base.name]
        base_path, meta = entry.locate(), {"params_dense": entry.params}
    else:
        raise UserError(f"'{uid}': compression needs a local base model (a registry name or hf:PATH)")
    check_model_path(base_path)
    entry = registry.get(uid)
    if entry is not None:
        meta |= entry.model_dump(exclude={"weights", "adapter", "endpoint"}, exclude_none=True)
    meta = {"spec": uid, "dense_base": str(base)} | meta
    return CompressedSUT(uid, base_path, spec.chain_text, options, meta)


def _openai_compat(
    uid: str, endpoint: Endpoint, options: SUTOptions, meta: dict[str, Any], key_required: bool
) -> SUT:
    from modelbench.secrets import get_secret
    from modelbench.suts.openai_compat import OpenAICompatSUT

    key = get_secret(endpoint.api_key_env, options.secrets_file) if endpoint.api_key_env else None
    if key_required and not key:
        raise UserError(
            f"SUT '{uid}' needs an API key: set {endpoint.api_key_env} or put it in a secrets file"
        )
    return OpenAICompatSUT(uid, endpoint, options, key, meta | {"base_url": endpoint.base_url})


def _huggingface(uid: str, path: Path, options: SUTOptions, meta: dict[str, Any]) -> SUT:
    from modelbench.suts.hf_loading import check_model_path
    from modelbench.suts.huggingface import HuggingFaceSUT

    check_model_path(path)
    return HuggingFaceSUT(uid, path, options, meta)


SPEC_KINDS: dict[type, SpecMaker] = {
    RegistrySpec: _named,
    HFSpec: _hf_path,
    OpenAISpec: _openai,
    OpenAICompatSpec: _openai_compat_url,
    CompressedSpec: _compressed,
}
