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
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from modelbench.errors import UserError
from modelbench.hashing import stable_hash
from modelbench.specs import parse_transforms
from modelbench.suts.hf_loading import load_causal_lm, model_identity, pick_device

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger("modelbench")

METADATA_FILE = "compression.json"
# Bump when a change to this module changes the weights it produces for the same inputs.
CACHE_FORMAT = 1
DEFAULT_CALIBRATION_SIZE = 64
DEFAULT_HELDOUT_SIZE = 64
CALIBRATION_SET = "mb-full"
# One in HELDOUT_EVERY prompts (by text hash) is reserved for perplexity, never for calibration.
HELDOUT_EVERY = 8
MAX_TOKENS = 256
BATCH_SIZE = 16
# Per-layer lists in a config that must shrink with the layers (transformers reads them by index).
LAYERWISE_CONFIG_LISTS = ("layer_types", "no_rope_layers")


# -- spec parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NM:
    """Keep `keep` of every `group` consecutive input weights in each row (2:4 keeps 2 of 4)."""

    keep: int
    group: int

    def __str__(self) -> str:
        return f"{self.keep}:{self.group}"


Sparsity = float | NM


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
    transforms = [TRANSFORMS[step.name](step.name, step.value) for step in parse_transforms(text)]
    if num_layers is not None:
        check_chain(transforms, num_layers)
    return transforms


def check_chain(transforms: list[Transform], num_layers: int) -> None:
    for transform in transforms:
        num_layers = transform.check(num_layers)


def canonical_chain(transforms: list[Transform]) -> str:
    return "+".join(t.spec for t in transforms)


# -- calibration text -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationTexts:
    calibration: list[str]
    heldout: list[str]


def calibration_texts(
    size: int = DEFAULT_CALIBRATION_SIZE, seed: int = 0, heldout_size: int = DEFAULT_HELDOUT_SIZE
) -> CalibrationTexts:
    """Seeded calibration prompts and a fixed held-out slice, disjoint by text.

    Both come from the benchmark's own prompt texts: the SUT will be asked these kinds of
    questions, and shipping them costs nothing. The held-out slice does not depend on the seed or
    the calibration size, so perplexities compare across every variant of a base.
    """
    from modelbench.prompts import stratified_sample

    if size < 1 or heldout_size < 1:
        raise UserError("calibration and held-out sizes must be at least 1")
    calibration_pool, heldout_pool = _calibration_pools()
    calibration = stratified_sample(calibration_pool, size, seed=seed)
    heldout = stratified_sample(heldout_pool, heldout_size, seed=0)
    return CalibrationTexts([i.text for i in calibration], [i.text for i in heldout])


@lru_cache(maxsize=1)
def _calibration_pools() -> tuple[list[Any], list[Any]]:
    """(calibration items, held-out items): split by a hash of the text, so never by seed."""
    from modelbench.prompts import load_prompt_set

    items = load_prompt_set(CALIBRATION_SET).items
    heldout = [i for i in items if int(stable_hash(i.text, length=8), 16) % HELDOUT_EVERY == 0]
    heldout_texts = {i.text for i in heldout}
    return [i for i in items if i.text not in heldout_texts], heldout


@dataclass(frozen=True)
class TokenBatch:
    """Right-padded token ids and each row's true length.

    Right padding needs no attention mask: causal attention never lets a real token see the padding
    after it, so every real position computes what it would alone, at its true position. Only the
    readers (last-token states, activation norms, perplexity) have to skip the padded tail.
    """

    ids: torch.Tensor
    lengths: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        import torch

        positions = torch.arange(self.ids.shape[1], device=self.ids.device)
        return positions.unsqueeze(0) < self.lengths.unsqueeze(1)

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


def tokenize(tokenizer: Any, texts: list[str], device: str, batch_size: int = BATCH_SIZE) -> list[TokenBatch]:
    """Texts in batches of `batch_size`: a few large matmuls instead of many tiny ones."""
    import torch

    rows = [tokenizer(text, truncation=True, max_length=MAX_TOKENS)["input_ids"] for text in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = [row for row in rows[start : start + batch_size] if row]
        if not chunk:
            continue
        width = max(len(row) for row in chunk)
        ids = torch.tensor([row + [pad] * (width - len(row)) for row in chunk], device=device)
        lengths = torch.tensor([len(row) for row in chunk], device=device)
        batches.append(TokenBatch(ids, lengths))
    return batches


# -- model structure and measurements ---------------------------------------------------------------


def decoder_layers(model: Any) -> Any:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise UserError(
            f"cannot compress {type(model).__name__}: only Llama-style decoders (model.model.layers) "
            "are supported"
        )
    return layers


def decoder_linears(model: Any) -> list[tuple[str, nn.Linear]]:
    """The decoder blocks' linear layers; embeddings and lm_head are outside the blocks and stay dense."""
    from torch import nn

    return [
        (f"layers.{index}.{name}", module)
        for index, layer in enumerate(decoder_layers(model))
        for name, module in layer.named_modules()
        if isinstance(module, nn.Linear)
    ]


def linear_zero_count(model: Any) -> tuple[int, int]:
    """(exact zeros, weights) over the decoder linear layers' weight matrices."""
    zeros = numel = 0
    for _, linear in decoder_linears(model):
        numel += linear.weight.numel()
        zeros += linear.weight.numel() - int(linear.weight.count_nonzero())
    return zeros, numel


def parameter_counts(model: Any) -> tuple[int, int]:
    """(parameters, nonzero parameters); tied tensors count once, like the published figures."""
    total = nonzero = 0
    for parameter in model.parameters():
        total += parameter.numel()
        nonzero += int(parameter.count_nonzero())
    return total, nonzero


def nm_valid(model: Any, pattern: NM) -> bool:
    """Every group of M consecutive input weights in every row has at most N nonzeros."""
    for _, linear in decoder_linears(model):
        rows, columns = linear.weight.shape
        if columns % pattern.group:
            return False
        groups = linear.weight.reshape(rows, columns // pattern.group, pattern.group)
        if int((groups != 0).sum(dim=-1).max()) > pattern.keep:
            return False
    return True


def perplexity(model: Any, batches: list[TokenBatch]) -> float:
    """Token-weighted perplexity: exp(total NLL / predicted tokens) over every sequence."""
    import torch
    import torch.nn.functional as F

    total, tokens = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            logits = model(input_ids=batch.ids, use_cache=False).logits[:, :-1]
            predicted = batch.mask[:, 1:]
            targets = batch.ids[:, 1:][predicted]
            total += float(F.cross_entropy(logits[predicted].float(), targets, reduction="sum"))
            tokens += int(predicted.sum())
    return math.exp(total / tokens) if tokens else float("nan")


# -- masks --------------------------------------------------------------------------------------------


def prune_count(sparsity: float, n: int) -> int:
    """How many of `n` weights a fraction prunes; Python's round, so tests can state it exactly."""
    return round(sparsity * n)


def matrix_prune_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """True for the round(S * numel) lowest scores of the whole matrix; ties go to the lower index."""
    import torch

    k = prune_count(sparsity, score.numel())
    order = torch.sort(score.flatten(), stable=True).indices
    mask = torch.zeros(score.numel(), dtype=torch.bool, device=score.device)
    mask[order[:k]] = True
    return mask.view_as(score)


def row_prune_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """True for the round(S * in_features) lowest scores of each row; ties go to the lower index."""
    import torch

    k = prune_count(sparsity, score.shape[1])
    order = torch.sort(score, dim=1, stable=True).indices
    mask = torch.zeros_like(score, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask


def nm_prune_mask(score: torch.Tensor, pattern: NM) -> torch.Tensor:
    """True for all but the `keep` highest scores of every `group` consecutive inputs of a row."""
    import torch

    rows, columns = score.shape
    if columns % pattern.group:
        raise UserError(f"cannot apply {pattern} sparsity: a layer has {columns} inputs, not a multiple of M")
    groups = score.reshape(rows, columns // pattern.group, pattern.group)
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices
    mask = torch.ones_like(groups, dtype=torch.bool)
    mask.scatter_(-1, order[..., : pattern.keep], False)
    return mask.view(rows, columns)


# -- drop-layers --------------------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised from a hook to skip the rest of a forward pass once the wanted inputs are captured."""


def _hidden(output: Any) -> torch.Tensor:
    """Decoder blocks return a tensor in transformers 5 and a tuple in 4.x."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def _hooks(handles: list[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def last_token_states(model: Any, batches: list[TokenBatch]) -> torch.Tensor:
    """[samples, L + 1, hidden]: the last token's residual stream entering each block, then leaving the last.

    Hooks rather than output_hidden_states: transformers replaces the final hidden state with the
    normed one, and the angular distance to the end of the stack must use the raw residual stream.
    """
    import torch

    layers = decoder_layers(model)
    current: list[torch.Tensor] = []
    last: list[torch.Tensor] = []

    def pick(hidden: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, last[0] - 1].detach().double()

    def before(module: Any, args: tuple, kwargs: dict) -> None:
        current.append(pick(args[0] if args else kwargs["hidden_states"]))

    def after(module: Any, args: tuple, output: Any) -> None:
        current.append(pick(_hidden(output)))

    handles = [layer.register_forward_pre_hook(before, with_kwargs=True) for layer in layers]
    handles.append(layers[-1].register_forward_hook(after))
    samples = []
    with _hooks(handles), torch.no_grad():
        for batch in batches:
            current.clear()
            last[:] = [batch.lengths]
            model(input_ids=batch.ids, use_cache=False)
            samples.append(torch.stack(current, dim=1))
    return torch.cat(samples)


def angular_distances(states: torch.Tensor, n: int) -> list[float]:
    """Mean over samples of arccos(cos(h_l, h_(l+n))) / pi for every start l in 0..L-n."""
    import torch
    import torch.nn.functional as F

    depth = states.shape[1] - 1
    distances = []
    for start in range(depth - n + 1):
        cosine = F.cosine_similarity(states[:, start], states[:, start + n], dim=-1).clamp(-1.0, 1.0)
        distances.append(float((torch.arccos(cosine) / math.pi).mean()))
    return distances


def remove_blocks(model: Any, start: int, n: int) -> None:
    """Drop blocks start..start+n-1 and renumber the rest: the KV cache is indexed by layer_idx."""
    from torch import nn

    layers = list(decoder_layers(model))
    keep = [i for i in range(len(layers)) if not start <= i < start + n]
    model.model.layers = nn.ModuleList(layers[i] for i in keep)
    for new_index, layer in enumerate(model.model.layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    config = model.config
    for name in LAYERWISE_CONFIG_LISTS:
        values = getattr(config, name, None)
        if isinstance(values, list | tuple) and len(values) == len(layers):
            setattr(config, name, [values[i] for i in keep])
    config.num_hidden_layers = len(keep)


# -- Wanda ----------------------------------------------------------------------------------------------


def capture_block_inputs(model: Any, batches: list[TokenBatch]) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """Each batch's input to block 0 and the keyword arguments (mask, rotary tables) blocks get."""
    import torch

    captured: list[tuple[torch.Tensor, dict[str, Any]]] = []

    def grab(module: Any, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        captured.append((hidden.detach(), dict(kwargs)))
        raise _StopForward

    handle = decoder_layers(model)[0].register_forward_pre_hook(grab, with_kwargs=True)
    with _hooks([handle]), torch.no_grad():
        for batch in batches:
            try:
                model(input_ids=batch.ids, use_cache=False)
            except _StopForward:
                pass
    return captured


def _input_norms(
    layer: Any, inputs: list[tuple[torch.Tensor, dict[str, Any]]], batches: list[TokenBatch]
) -> dict[str, torch.Tensor]:
    """Squared L2 norm of every input feature of every linear in `layer`, over all real tokens."""
    import torch
    from torch import nn

    linears = {name: m for name, m in layer.named_modules() if isinstance(m, nn.Linear)}
    sums = {name: torch.zeros(m.in_features, dtype=torch.float64) for name, m in linears.items()}
    real: list[torch.Tensor] = []

    def accumulate(name: str) -> Callable[..., None]:
        def hook(module: Any, args: tuple) -> None:
            x = args[0].detach()[real[0]].double()
            sums[name] += (x * x).sum(dim=0).cpu()

        return hook

    handles = [m.register_forward_pre_hook(accumulate(name)) for name, m in linears.items()]
    with _hooks(handles), torch.no_grad():
        for (hidden, kwargs), batch in zip(inputs, batches, strict=True):
            real[:] = [batch.mask]
            layer(hidden, **kwargs)
    return sums


def wanda_prune(model: Any, batches: list[TokenBatch], sparsity: Sparsity) -> None:
    """Prune block by block: block i's activations come from blocks 0..i-1 as already pruned."""
    import torch
    from torch import nn

    inputs = capture_block_inputs(model, batches)
    with torch.no_grad():
        for layer in decoder_layers(model):
            squared = _input_norms(layer, inputs, batches)
            for name, linear in layer.named_modules():
                if not isinstance(linear, nn.Linear):
                    continue
                weight = linear.weight.data
                score = weight.abs().double() * squared[name].sqrt().to(weight.device).unsqueeze(0)
                if isinstance(sparsity, NM):
                    mask = nm_prune_mask(score, sparsity)
                else:
                    mask = row_prune_mask(score, sparsity)
                weight[mask] = 0
            inputs = [(_hidden(layer(hidden, **kwargs)), kwargs) for hidden, kwargs in inputs]


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
    root = os.environ.get("MODELBENCH_CACHE") or Path.home() / ".cache" / "modelbench"
    return Path(root).expanduser() / "compressed"


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


def require_dense_weights(model: Any) -> None:
    """Packed GGUF layers (transformers keeps them packed when it has a matmul kernel) hold no
    weight matrix to prune, so compression needs the dequantised model."""
    packed = [name for name, module in model.named_modules() if type(module).__name__ == "GgufLinear"]
    if packed:
        raise UserError(
            f"cannot compress a GGUF model whose layers stay packed ({packed[0]}, ...): load it "
            "dequantised (transformers GgufConfig(dequantize=True)) or convert it to a folder first"
        )


def forget_gguf_origin(model: Any) -> None:
    """A model read from a dequantised GGUF still carries the GGUF quantizer, and transformers
    refuses to save a quantized model; its weights are plain tensors, so drop the marker."""
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)) == "gguf":
        require_dense_weights(model)
        quantizer.remove_quantization_config(model)


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
