"""Turn a SUT spec into a SUT object.

Specs: a registry name; `hf:/path/to/model_dir` or `hf:/path/to/file.gguf`; `openai:MODEL` (the
OpenAI API, key from OPENAI_API_KEY); `openai-compat:MODEL@BASE_URL` (any OpenAI-compatible
server; key from OPENAI_COMPAT_API_KEY when the server wants one).

Specs without a registry entry keep the command line self-contained; named entries carry the
metadata (dense base, compression, parameters, paper) that reports and leaderboards show.
"""

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

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


class Endpoint(BaseModel):
    """Where an API SUT lives; the key is named, never written: it comes from env or secrets file."""

    base_url: str
    model: str
    api_key_env: str | None = None


class SUTEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    adapter: str
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


class SUTOptions(BaseModel):
    """Run-time settings that apply to every SUT of a run."""

    max_new_tokens: int = 128
    batch_size: int | None = None
    device: str | None = None
    concurrency: int = 32
    calibration_size: int = 64
    calibration_seed: int = 0
    temperature: float = 0.0
    timeout_s: float = 60.0
    max_attempts: int = 5
    secrets_file: Path | None = None
    kv_cache: Literal["dynamic", "static"] | None = None


OPENAI_BASE_URL = "https://api.openai.com/v1"


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
    from modelbench.suts.compress import split_sut_spec

    base_spec, chain = split_sut_spec(spec)
    if chain is not None:
        return _compressed(spec, base_spec, chain, options, registry)
    if spec.startswith("hf:"):
        path = Path(spec[3:]).expanduser()
        if not spec[3:]:
            raise UserError("empty path in SUT spec 'hf:' (use hf:/path/to/model)")
        return _huggingface(spec, path, options, {"spec": spec})
    if spec.startswith("openai:"):
        model = spec.removeprefix("openai:")
        if not model:
            raise UserError("empty model in SUT spec 'openai:' (use openai:gpt-4o-mini)")
        endpoint = Endpoint(base_url=OPENAI_BASE_URL, model=model, api_key_env="OPENAI_API_KEY")
        return _openai_compat(spec, endpoint, options, {"spec": spec}, key_required=True)
    if spec.startswith("openai-compat:"):
        model, _, url = spec.removeprefix("openai-compat:").rpartition("@")
        if not model or not url.startswith(("http://", "https://")):
            raise UserError(f"bad SUT spec '{spec}' (use openai-compat:MODEL@http://host:port/v1)")
        endpoint = Endpoint(base_url=url, model=model, api_key_env="OPENAI_COMPAT_API_KEY")
        return _openai_compat(spec, endpoint, options, {"spec": spec}, key_required=False)
    entry = registry.get(spec)
    if entry is None:
        known = ", ".join(sorted(registry))
        raise UserError(
            f"unknown SUT '{spec}' (known: {known}; or hf:PATH, openai:MODEL, openai-compat:MODEL@URL)"
        )
    meta = entry.model_dump(exclude={"weights", "adapter", "endpoint"}, exclude_none=True)
    if entry.adapter == "huggingface":
        return _huggingface(spec, entry.locate(), options, meta)
    if entry.adapter == "openai_compat":
        if entry.endpoint is None:
            raise UserError(f"SUT '{spec}': an openai_compat entry needs an endpoint")
        return _openai_compat(spec, entry.endpoint, options, meta, key_required=False)
    raise UserError(f"SUT '{spec}': unsupported adapter '{entry.adapter}'")


def _compressed(
    spec: str, base_spec: str, chain: str, options: SUTOptions, registry: dict[str, SUTEntry]
) -> SUT:
    """`BASE+TRANSFORM=ARG`: BASE must be a local model (a registry entry or hf:PATH)."""
    from modelbench.suts.compressed import CompressedSUT
    from modelbench.suts.hf_loading import check_model_path

    if base_spec.startswith("hf:"):
        base_path, meta = Path(base_spec[3:]).expanduser(), {}
    elif base_spec in registry and registry[base_spec].adapter == "huggingface":
        entry = registry[base_spec]
        base_path, meta = entry.locate(), {"params_dense": entry.params}
    else:
        raise UserError(f"'{spec}': compression needs a local base model (a registry name or hf:PATH)")
    check_model_path(base_path)
    entry = registry.get(spec)
    if entry is not None:
        meta |= entry.model_dump(exclude={"weights", "adapter", "endpoint"}, exclude_none=True)
    meta = {"spec": spec, "dense_base": base_spec} | meta
    return CompressedSUT(
        uid=spec,
        base_path=base_path,
        chain=chain,
        calibration_size=options.calibration_size,
        calibration_seed=options.calibration_seed,
        max_new_tokens=options.max_new_tokens,
        batch_size=options.batch_size,
        device=options.device,
        metadata=meta,
        kv_cache=options.kv_cache,
    )


def _openai_compat(
    uid: str, endpoint: Endpoint, options: SUTOptions, meta: dict[str, Any], key_required: bool
) -> SUT:
    from modelbench.secrets import get_secret
    from modelbench.suts.openai_compat import OpenAICompatConfig, OpenAICompatSUT
    from modelbench.suts.retry import RetryPolicy

    key = get_secret(endpoint.api_key_env, options.secrets_file) if endpoint.api_key_env else None
    if key_required and not key:
        raise UserError(
            f"SUT '{uid}' needs an API key: set {endpoint.api_key_env} or put it in a secrets file"
        )
    config = OpenAICompatConfig(
        model=endpoint.model,
        base_url=endpoint.base_url,
        api_key_env=endpoint.api_key_env,
        concurrency=options.concurrency,
        temperature=options.temperature,
        max_tokens=options.max_new_tokens,
        timeout_s=options.timeout_s,
        retry=RetryPolicy(max_attempts=options.max_attempts),
    )
    return OpenAICompatSUT(uid, config, key, meta | {"base_url": endpoint.base_url})


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
        kv_cache=options.kv_cache,
    )
