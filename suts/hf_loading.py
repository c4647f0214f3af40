"""Load a transformers causal LM from a local folder or GGUF file, never from a hub.

Shared by the HuggingFace SUT and by evaluators that run local models. GGUF files are
dequantised by transformers (with the `gguf` package) into ordinary torch weights.
"""

import functools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbench.errors import UserError

log = logging.getLogger("modelbench")
# transformers' lazy imports and meta-device initialisation are not safe to run from several
# threads at once (two SUTs loading together fail with import and meta-tensor errors), so model
# loading is serialised; generation itself still runs in parallel.
LOADING_LOCK = threading.RLock()


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: str


def pick_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.cache
def native_bf16_cpu() -> bool:
    """Whether this CPU does bfloat16 matrix work natively (AVX512-BF16 or AMX); emulated bf16
    is slower than float32.

    On x86 Linux the CPU flags answer without importing torch (a second of a cached re-run,
    which needs the answer for the MiniLM grader's fingerprint); elsewhere torch is asked.
    Cached: every response key asks, through the SUT's fingerprint."""
    flags = _x86_cpu_flags()
    if flags is not None:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _x86_cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def resolve_dtype(device: str, dtype: str | None = None) -> str:
    """The dtype a model runs in: as asked, else bfloat16 on a GPU or a CPU with native bf16.

    On the 2-core AMD EPYC (AVX512-BF16) CI machines, SmolLM2-135M from its GGUF generated
    48 / 497 tokens/s at batch 1 / 32 in bfloat16 against 25 / 199 in float32
    (benchmarks/sut_throughput.py hf): transformers keeps GGUF weights packed for float32 and
    unpacks them in every matmul, while bf16 weights go straight to oneDNN.
    """
    if dtype:
        return dtype
    if device.startswith("cuda") or (device == "cpu" and native_bf16_cpu()):
        return "bfloat16"
    return "float32"


def model_identity(path: Path) -> dict[str, Any]:
    """A cheap identity for weights on disk: file names and sizes (hashing GBs per run is not)."""
    path = path.resolve()
    if path.is_file():
        return {"path": str(path), "files": {path.name: path.stat().st_size}}
    files = {
        p.name: p.stat().st_size
        for p in sorted(path.iterdir())
        if p.is_file() and p.suffix in {".json", ".safetensors", ".bin", ".gguf", ".model", ".txt"}
    }
    return {"path": str(path), "files": files}


def check_model_path(path: Path) -> None:
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"model file {path} is not a .gguf file (give a folder or a .gguf)")
        return
    if not path.is_dir():
        raise UserError(f"model not found: {path}")
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a transformers model folder (no config.json)")


def load_causal_lm(path: Path, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Tokenizer (left padding, a pad token) and model in eval mode on `device`."""
    with LOADING_LOCK:
        return _load_causal_lm(path, device, dtype)


def _load_causal_lm(path: Path, device: str | None, dtype: str | None) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    check_model_path(path)
    device = pick_device(device)
    torch_dtype = getattr(torch, resolve_dtype(device, dtype))
    if path.is_file():
        folder, extra = str(path.parent), {"gguf_file": path.name}
    else:
        folder, extra = str(path), {}
    # On a GPU the weights go straight to it: an 8B model staged in host memory first costs
    # 16 GB of RAM and a slow copy.
    placement = {"device_map": device} if device.startswith("cuda") else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **extra, **placement)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model from {path}: {str(exc).splitlines()[0]}") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, device=device)
