"""The model surgery behind compression: which weights a transform zeros or which blocks it drops.

- pruning masks: per matrix or per row (magnitude, Wanda), or N:M within groups of inputs;
- drop-layers: the last token's residual stream entering each block, the angular distance between
  blocks n apart (Gromov et al. 2024), and removing a run of blocks;
- Wanda (Sun et al. 2024): block-by-block input norms on already-pruned activations.

Only Llama-style decoders (`model.model.layers`, linear projections inside each block) are
supported. `modelbench.suts.compress` chains these into transforms and caches the result: a change
here that changes the weights produced must bump its CACHE_FORMAT.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelbench.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from modelbench.suts.compress_calibration import TokenBatch

# Per-layer lists in a config that must shrink with the layers (transformers reads them by index).
LAYERWISE_CONFIG_LISTS = ("layer_types", "no_rope_layers")


@dataclass(frozen=True)
class NM:
    """Keep `keep` of every `group` consecutive input weights in each row (2:4 keeps 2 of 4)."""

    keep: int
    group: int

    def __str__(self) -> str:
        return f"{self.keep}:{self.group}"


Sparsity = float | NM


# -- model structure ------------------------------------------------------------------------------


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


# -- GGUF origins -----------------------------------------------------------------------------------


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
