"""Turn a SUT spec into a SUT object: one table from adapter name to the factory that builds it.

Specs (grammar in `modelbench.specs`, parsed there once): a registry name; `hf:/path/to/model_dir`
or `hf:/path/to/file.gguf`; `openai:MODEL` (the OpenAI API, key from OPENAI_API_KEY);
`openai-compat:MODEL@BASE_URL` (any OpenAI-compatible server; key from OPENAI_COMPAT_API_KEY when
the server wants one); `BASE+TRANSFORM=ARG...` (a local base compressed on the fly).

Every spec names its adapter: a parsed spec's class says it (`HFSpec.adapter` is "huggingface"),
a registry name resolves to its entry, whose `adapter` says it. `ADAPTERS` maps that name to a
factory `(uid, source, options, metadata) -> SUT`, where `source` is the parsed spec or the registry
entry; the built-in factories are the adapters' own `from_spec` class methods, imported on first
use (`module:Class`), so that importing this module loads neither torch nor an HTTP client. A
plugin registers its factory with `@adapter(NAME)` and is named by a registry entry. Each adapter
reads what it needs from its source (weights it locates, a key it looks up), so the route from a
spec to a constructor is: this module, then the adapter's.

Specs without a registry entry keep the command line self-contained; named entries carry the
metadata (dense base, compression, parameters, paper) that reports and leaderboards show.
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from modelbench.errors import UserError
from modelbench.specs import CompressedSpec, HFSpec, RegistrySpec, SUTSpec, TransformSpec, parse_sut_spec
from modelbench.suts.base import SUT
from modelbench.suts.entries import BUILD_FIELDS, SUTEntry, Weights, load_registry
from modelbench.suts.options import SUTOptions

DEFAULT_SUT = "smollm2-135m"

# (uid, source: a parsed spec or a registry entry, options, metadata) -> SUT
AdapterFactory = Callable[[str, Any, SUTOptions, dict[str, Any]], SUT]
# The one table: an adapter's name -> its factory, or where to import it from ("module:Class").
ADAPTERS: dict[str, AdapterFactory | str] = {
    "huggingface": "modelbench.suts.huggingface:HuggingFaceSUT",
    "openai_compat": "modelbench.suts.openai_compat:OpenAICompatSUT",
    "compressed": "modelbench.suts.compressed:CompressedSUT",
}
# Adapters that only a spec names (`BASE+TRANSFORM=ARG`), never a registry entry's `adapter`.
SPEC_ONLY = frozenset({"compressed"})


def adapter(name: str) -> Callable[[AdapterFactory], AdapterFactory]:
    """Register the decorated factory for registry entries with `adapter: NAME`."""

    def register(factory: AdapterFactory) -> AdapterFactory:
        if name in ADAPTERS:
            raise ValueError(f"SUT adapter '{name}' is already registered")
        ADAPTERS[name] = factory
        return factory

    return register


@dataclass(frozen=True)
class CompressedSource:
    """A compressed spec with its base resolved: the weights to compress and the chain, typed."""

    base: Weights
    chain: tuple[TransformSpec, ...]


def make_sut(
    spec: str | SUTSpec,
    options: SUTOptions | None = None,
    registry: dict[str, SUTEntry] | None = None,
    uid: str | None = None,
) -> SUT:
    """A SUT for a spec (text or parsed, see `modelbench.specs`). Its uid is the text as given
    (`uid`, when the caller parsed the text itself)."""
    options = options or SUTOptions()
    registry = registry if registry is not None else load_registry()
    parsed = parse_sut_spec(spec) if isinstance(spec, str) else spec
    uid = uid if uid is not None else str(spec)
    meta: dict[str, Any] = {"spec": uid}
    source: Any = parsed
    if isinstance(parsed, RegistrySpec):
        source = _entry(uid, parsed.name, registry)
        name, meta = source.adapter, source.model_dump(exclude=BUILD_FIELDS, exclude_none=True)
    elif isinstance(parsed, CompressedSpec):
        name, source, meta = "compressed", *_compressed(uid, parsed, registry)
    else:
        name = parsed.adapter
    return _factory(uid, name, source)(uid, source, options, meta)


def _entry(uid: str, name: str, registry: dict[str, SUTEntry]) -> SUTEntry:
    entry = registry.get(name)
    if entry is None:
        known = ", ".join(sorted(registry))
        raise UserError(
            f"unknown SUT '{uid}' (known: {known}; or hf:PATH, openai:MODEL, openai-compat:MODEL@URL)"
        )
    return entry


def _compressed(
    uid: str, spec: CompressedSpec, registry: dict[str, SUTEntry]
) -> tuple[CompressedSource, dict[str, Any]]:
    """`BASE+TRANSFORM=ARG`: BASE must be a local model (a registry entry or hf:PATH)."""
    meta: dict[str, Any] = {}
    base = spec.base
    if isinstance(base, HFSpec):
        weights = Weights(path=base.path)
    elif base.name in registry and registry[base.name].adapter == "huggingface":
        entry = registry[base.name]
        weights, meta = entry.weights or Weights(), {"params_dense": entry.params}
    else:
        raise UserError(f"'{uid}': compression needs a local base model (a registry name or hf:PATH)")
    named = registry.get(uid)  # a registry entry may describe this very variant
    if named is not None:
        meta |= named.model_dump(exclude=BUILD_FIELDS, exclude_none=True)
    return CompressedSource(weights, spec.chain), {"spec": uid, "dense_base": spec.base_text} | meta


def _factory(uid: str, name: str, source: Any) -> AdapterFactory:
    """The factory registered under `name`; a built-in's module is imported here, on first use,
    and a registry entry's `module` (or an installed plugin) may bring one that is missing."""
    entry = isinstance(source, SUTEntry)
    found = None if entry and name in SPEC_ONLY else ADAPTERS.get(name)
    if found is None and entry and name not in SPEC_ONLY:
        if source.module:
            _import_adapter_module(uid, source.module)
            found = ADAPTERS.get(name)
        if found is None:
            from modelbench.plugins import load_plugins

            load_plugins()  # an installed plugin may bring the adapter
            found = ADAPTERS.get(name)
    if found is None:
        known = ", ".join(a for a in ADAPTERS if a not in SPEC_ONLY)
        raise UserError(f"SUT '{uid}': unsupported adapter '{name}' (known: {known})")
    if isinstance(found, str):
        module, _, cls = found.partition(":")
        return getattr(import_module(module), cls).from_spec
    return found


def _import_adapter_module(uid: str, module: str) -> None:
    try:
        import_module(module)
    except ImportError as exc:
        raise UserError(f"SUT '{uid}': cannot import module '{module}' for its adapter: {exc}") from None
