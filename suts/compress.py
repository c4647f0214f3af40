"""Compress a dense causal LM on the fly: drop blocks by angular distance, prune by magnitude or Wanda.

A leaderboard of compressed against dense models is only fair when both come from the same base
and when the compression is reproducible, so every transform here is deterministic given the
calibration seed, every result records what was done to the model (`CompressionMetadata`), and the
compressed weights are cached on disk as an ordinary transformers checkpoint keyed by everything
that changes them.

Transforms chain left to right in a spec such as `drop-layers=6+wanda=0.5`:

- `drop-layers=N`: Gromov et al., "The Unreasonable Ineffectiveness of the Deeper Layers" (2024).
- `magnitude=S` / `magnitude=N:M`: the classic baseline, per weight matrix.
- `wanda=S` / `wanda=N:M`: Sun et al., "A Simple and Effective Pruning Approach for LLMs" (2024).

Only Llama-style decoders (`model.model.layers`, linear projections inside each block) are
supported; that covers Llama, SmolLM2, Mistral, Qwen2 and most GGUF checkpoints transformers reads.
The weight and block surgery is in `modelbench.suts.pruning`; the calibration and held-out text
and perplexity in `modelbench.suts.compress_calibration`. This module chains transforms, records
what they did and caches the result.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelbench.cache import cache_dir
from modelbench.errors import UserError
from modelbench.hashing import stable_hash
from modelbench.specs import TransformSpec, parse_transforms

# Everything below was defined here before the split; callers import it from this module.
from modelbench.suts.compress_calibration import (  # noqa: F401 (re-exported)
    BATCH_SIZE,
    CALIBRATION_SET,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_HELDOUT_SIZE,
    HELDOUT_EVERY,
    MAX_TOKENS,
    CalibrationTexts,
    TokenBatch,
    calibration_texts,
    perplexity,
    tokenize,
)
from modelbench.suts.hf_loading import load_causal_lm, model_identity, pick_device
from modelbench.suts.pruning import (  # noqa: F401 (re-exported)
    LAYERWISE_CONFIG_LISTS,
    NM,
    Sparsity,
    angular_distances,
    capture_block_inputs,
    decoder_layers,
    decoder_linears,
    forget_gguf_origin,
    last_token_states,
    linear_zero_count,
    matrix_prune_mask,
    nm_prune_mask,
    nm_valid,
    parameter_counts,
    prune_count,
    remove_blocks,
    require_dense_weights,
    row_prune_mask,
    wanda_prune,
)

log = logging.getLogger("modelbench")

METADATA_FILE = "compression.json"
# Bump when a change to this module, pruning.py or compress_calibration.py changes the weights
# produced for the same inputs.
CACHE_FORMAT = 1


# -- spec parsing -----------------------------------------------------------------------------------


@dataclass
class CompressionContext:
    """What transforms share: calibration token ids and where each current block came from."""

    calibration: list[TokenBatch]
    layer_origin: list[int]


class StepRecord(BaseModel):
    """What one transform did; `removed_layers` are indices in the dense base's numbering."""

    transform: str
    seconds: float
    removed_layers: list[int] | None = None
    start: int | None = None
    angular_distances: list[float] | None = None


class Transform(ABC):
    name: str

    @property
    @abstractmethod
    def spec(self) -> str:
        """Canonical text, so that equivalent specs (wanda=0.50, wanda=.5) share a cache entry."""

    def check(self, num_layers: int) -> int:
        """Raise UserError if this cannot apply to a model with `num_layers` blocks; layers after."""
        return num_layers

    @abstractmethod
    def apply(self, model: Any, context: CompressionContext) -> StepRecord: ...

    def __repr__(self) -> str:
        return f"<{self.spec}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)


class DropLayers(Transform):
    name = "drop-layers"

    def __init__(self, n: int):
        self.n = n

    @property
    def spec(self) -> str:
        return f"drop-layers={self.n}"

    def check(self, num_layers: int) -> int:
        if self.n >= num_layers:
            raise UserError(
                f"'{self.spec}' needs fewer than the model's {num_layers} decoder layers "
                f"(drop at most {num_layers - 1})"
            )
        return num_layers - self.n

    def apply(self, model: Any, context: CompressionContext) -> StepRecord:
        started = time.perf_counter()
        self.check(len(decoder_layers(model)))
        states = last_token_states(model, context.calibration)
        distances = angular_distances(states, self.n)
        start = min(range(len(distances)), key=distances.__getitem__)
        removed = context.layer_origin[start : start + self.n]
        remove_blocks(model, start, self.n)
        del context.layer_origin[start : start + self.n]
        return StepRecord(
            transform=self.spec,
            seconds=time.perf_counter() - started,
            removed_layers=list(removed),
            start=start,
            angular_distances=distances,
        )


class _Pruning(Transform):
    """Zeros in the decoder's linear layers: a fraction S of each matrix or row, or an N:M pattern."""

    def __init__(self, sparsity: Sparsity):
        self.sparsity = sparsity

    @property
    def spec(self) -> str:
        value = str(self.sparsity) if isinstance(self.sparsity, NM) else repr(float(self.sparsity))
        return f"{self.name}={value}"


class Magnitude(_Pruning):
    """Per matrix (unstructured) or per row group (N:M): a baseline that ignores activations."""

    name = "magnitude"

    def apply(self, model: Any, context: CompressionContext) -> StepRecord:
        import torch

        started = time.perf_counter()
        with torch.no_grad():
            for _, linear in decoder_linears(model):
                weight = linear.weight.data
                if isinstance(self.sparsity, NM):
                    mask = nm_prune_mask(weight.abs(), self.sparsity)
                else:
                    mask = matrix_prune_mask(weight.abs(), self.sparsity)
                weight[mask] = 0
        return StepRecord(transform=self.spec, seconds=time.perf_counter() - started)


class Wanda(_Pruning):
    """Scores |W_ij| * ||X_j||, compared within a row, block by block on already-pruned inputs."""

    name = "wanda"

    def apply(self, model: Any, context: CompressionContext) -> StepRecord:
        started = time.perf_counter()
        wanda_prune(model, context.calibration, self.sparsity)
        return StepRecord(transform=self.spec, seconds=time.perf_counter() - started)


def _parse_fraction_or_nm(name: str, value: str) -> Sparsity:
    nm = re.fullmatch(r"(\d+):(\d+)", value)
    if nm:
        keep, group = int(nm.group(1)), int(nm.group(2))
        if not 0 < keep < group:
            raise UserError(f"'{name}={value}': N:M needs 0 < N < M (N weights kept of every M), e.g. 2:4")
        return NM(keep, group)
    try:
        sparsity = float(value)
    except ValueError:
        raise UserError(
            f"'{name}={value}': give a sparsity in (0, 1) such as 0.5, or N:M such as 2:4"
        ) from None
    if not (math.isfinite(sparsity) and 0 < sparsity < 1):
        raise UserError(f"'{name}={value}': sparsity must be strictly between 0 and 1, e.g. 0.5")
    return sparsity


def _parse_layers(name: str, value: str) -> int:
    if not re.fullmatch(r"\d+", value) or int(value) < 1:
        raise UserError(f"'{name}={value}': give a positive whole number of layers to drop")
    return int(value)


TRANSFORMS: dict[str, Callable[[str, str], Transform]] = {
    "drop-layers": lambda name, value: DropLayers(_parse_layers(name, value)),
    "magnitude": lambda name, value: Magnitude(_parse_fraction_or_nm(name, value)),
    "wanda": lambda name, value: Wanda(_parse_fraction_or_nm(name, value)),
}
# The grammar (names, '+', '=') is modelbench.specs' (TRANSFORM_NAMES lists these keys, in order); what
# each argument means is decided here.


def parse_chain(text: str, num_layers: int | None = None) -> list[Transform]:
    """Transforms of a spec like `drop-layers=6+wanda=0.5`; with `num_layers`, also checks depth."""
    transforms = build_chain(parse_transforms(text))
    if num_layers is not None:
        check_chain(transforms, num_layers)
    return transforms


def build_chain(steps: Sequence[TransformSpec]) -> list[Transform]:
    """The transforms of parsed steps (`modelbench.specs.TransformSpec`), each checking its value."""
    return [TRANSFORMS[step.name](step.name, step.value) for step in steps]


def check_chain(transforms: list[Transform], num_layers: int) -> None:
    for transform in transforms:
        num_layers = transform.check(num_layers)


def canonical_chain(transforms: list[Transform]) -> str:
    return "+".join(t.spec for t in transforms)


# -- metadata and the cached build ----------------------------------------------------------------------


class CompressionMetadata(BaseModel):
    """Everything a report needs to place a compressed SUT beside its dense base."""

    # Heavy pruning can drive perplexity to infinity; keep it round-trippable through JSON.
    model_config = ConfigDict(ser_json_inf_nan="constants")

    format: int = CACHE_FORMAT
    key: str
    base_path: str
    base: dict[str, Any]
    chain: str
    steps: list[StepRecord]
    sparsity: float
    zero_weights: int
    linear_weights: int
    nm_pattern: str | None = None
    nm_valid: bool | None = None
    params_before: int
    params_after: int
    nonzero_params_before: int
    nonzero_params_after: int
    layers_before: int
    layers_after: int
    removed_layers: list[int] = Field(default_factory=list)
    angular_distances: list[float] | None = None
    calibration_set: str = CALIBRATION_SET
    calibration_size: int
    calibration_seed: int
    calibration_tokens: int
    heldout_size: int
    heldout_tokens: int
    dtype: str
    compression_seconds: float
    perplexity: float
    dense_perplexity: float


def cache_key(
    base_path: Path, chain: str, calibration_size: int, seed: int, heldout_size: int, dtype: str
) -> str:
    return stable_hash(
        {
            "format": CACHE_FORMAT,
            "base": model_identity(base_path),
            "chain": chain,
            "calibration_size": calibration_size,
            "seed": seed,
            "heldout_size": heldout_size,
            "dtype": dtype,
        },
        length=24,
    )


def default_cache_root() -> Path:
    """MODELBENCH_CACHE, else ~/.cache/modelbench; compressed checkpoints go under `compressed/`."""
    return cache_dir("compressed")


def load_cached(folder: Path) -> CompressionMetadata | None:
    """The metadata of a complete cache entry, or None (a folder only exists once complete)."""
    path = folder / METADATA_FILE
    if not path.is_file():
        return None
    return CompressionMetadata.model_validate_json(path.read_text("utf-8"))


def apply_chain(
    model: Any, transforms: list[Transform], calibration: list[TokenBatch]
) -> tuple[list[StepRecord], float]:
    """Run the chain in place; returns what each step did and the total seconds."""
    context = CompressionContext(
        calibration=calibration, layer_origin=list(range(len(decoder_layers(model))))
    )
    started = time.perf_counter()
    steps = []
    for transform in transforms:
        steps.append(transform.apply(model, context))
        log.info("compress: %s took %.1fs", transform.spec, steps[-1].seconds)
    return steps, time.perf_counter() - started


def _resolved_dtype(model: Any) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def _nm_summary(model: Any, transforms: list[Transform]) -> tuple[str | None, bool | None]:
    patterns = [t.sparsity for t in transforms if isinstance(t, _Pruning) and isinstance(t.sparsity, NM)]
    if not patterns:
        return None, None
    return str(patterns[-1]), nm_valid(model, patterns[-1])


def compress_loaded(
    loaded: Any,
    base_path: Path,
    transforms: list[Transform],
    texts: CalibrationTexts,
    seed: int,
    key: str,
) -> CompressionMetadata:
    """Apply `transforms` to an already loaded model in place and measure it against itself before."""
    model, tokenizer = loaded.model, loaded.tokenizer
    require_dense_weights(model)
    check_chain(transforms, len(decoder_layers(model)))
    calibration = tokenize(tokenizer, texts.calibration, loaded.device)
    heldout = tokenize(tokenizer, texts.heldout, loaded.device)
    params_before, nonzero_before = parameter_counts(model)
    layers_before = len(decoder_layers(model))
    dense_ppl = perplexity(model, heldout)
    steps, seconds = apply_chain(model, transforms, calibration)
    params_after, nonzero_after = parameter_counts(model)
    zeros, numel = linear_zero_count(model)
    nm_pattern, nm_ok = _nm_summary(model, transforms)
    first_drop = next((s for s in steps if s.angular_distances is not None), None)
    return CompressionMetadata(
        key=key,
        base_path=str(base_path),
        base=model_identity(base_path),
        chain=canonical_chain(transforms),
        steps=steps,
        sparsity=zeros / numel if numel else 0.0,
        zero_weights=zeros,
        linear_weights=numel,
        nm_pattern=nm_pattern,
        nm_valid=nm_ok,
        params_before=params_before,
        params_after=params_after,
        nonzero_params_before=nonzero_before,
        nonzero_params_after=nonzero_after,
        layers_before=layers_before,
        layers_after=len(decoder_layers(model)),
        removed_layers=sorted(i for s in steps for i in s.removed_layers or []),
        angular_distances=first_drop.angular_distances if first_drop else None,
        calibration_size=len(texts.calibration),
        calibration_seed=seed,
        calibration_tokens=sum(batch.tokens for batch in calibration),
        heldout_size=len(texts.heldout),
        heldout_tokens=sum(batch.tokens for batch in heldout),
        dtype=_resolved_dtype(model),
        compression_seconds=seconds,
        perplexity=perplexity(model, heldout),
        dense_perplexity=dense_ppl,
    )


def build_compressed(
    base_path: Path,
    chain: str,
    cache_root: Path,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    seed: int = 0,
    device: str | None = None,
    heldout_size: int = DEFAULT_HELDOUT_SIZE,
) -> tuple[Path, CompressionMetadata]:
    """A saved checkpoint of `base_path` compressed by `chain`, computed once per key and cached.

    The entry is written to a temporary folder and renamed into place, so a crash leaves no
    half-written entry and a concurrent build of the same key simply loses the race.
    """
    base_path = Path(base_path)
    transforms = parse_chain(chain)
    device = pick_device(device)
    # load_causal_lm's default dtype for the device: a bf16 GPU build and an fp32 CPU build differ.
    dtype = "bfloat16" if device.startswith("cuda") else "float32"
    key = cache_key(base_path, canonical_chain(transforms), calibration_size, seed, heldout_size, dtype)
    folder = Path(cache_root) / key
    cached = load_cached(folder)
    if cached is not None:
        return folder, cached
    texts = calibration_texts(calibration_size, seed, heldout_size)
    loaded = load_causal_lm(base_path, device, dtype)
    metadata = compress_loaded(loaded, base_path, transforms, texts, seed, key)
    _save_atomically(loaded, metadata, folder)
    return folder, load_cached(folder) or metadata


def _save_atomically(loaded: Any, metadata: CompressionMetadata, folder: Path) -> None:
    forget_gguf_origin(loaded.model)
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        loaded.model.save_pretrained(scratch)
        loaded.tokenizer.save_pretrained(scratch)
        (scratch / METADATA_FILE).write_text(metadata.model_dump_json(indent=2), "utf-8")
        try:
            scratch.rename(folder)
        except OSError:
            if load_cached(folder) is None:
                raise
            log.info("compress: another build of %s finished first; keeping it", folder.name)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def metadata_summary(metadata: CompressionMetadata) -> dict[str, Any]:
    """The few fields a SUT record or leaderboard row shows (the full file stays beside the weights)."""
    data = json.loads(metadata.model_dump_json())
    keep = (
        "chain",
        "sparsity",
        "nm_pattern",
        "nm_valid",
        "params_before",
        "params_after",
        "nonzero_params_after",
        "removed_layers",
        "calibration_size",
        "calibration_seed",
        "compression_seconds",
        "perplexity",
        "dense_perplexity",
    )
    return {name: data[name] for name in keep if data.get(name) is not None}
