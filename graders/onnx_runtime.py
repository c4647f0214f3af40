"""The ONNX Runtime form of a cross-encoder network: built once from the torch net, cached, run on CPU.

Why: on a CPU, a BERT-sized encoder in torch float32 spends its time in float matrix products and
in many small ops, each a trip through the thread pool. ONNX Runtime fuses the encoder's pieces
into a few kernels (its transformer optimizer: embedding + LayerNorm, attention, bias + GELU,
residual + LayerNorm) and runs the linear layers as int8 products with weights quantised once
(dynamic quantisation: each call measures its activations' range). Torch stays for training: the
graph is exported from exactly the net the float32 path runs (base + delta, encoder, masked mean
pooling, head), so the ONNX float32 form reproduces it to float rounding and the int8 form is
the only approximation.

Settings chosen by measurement on all-MiniLM-L6-v2 + the shipped delta, 2 busy CPU cores, XSTest
answers (`benchmarks/graders.py`):

- fusions on (attention and LayerNorm fused, then quantised as QAttention / int8 MatMul): the
  unfused graph quantised the same way ran 10-25% slower;
- QInt8 weights (signed), not QUInt8: QUInt8 ran at a third to two thirds of the speed here;
- per-channel weight scales (one per output column, fitting each column's range): the mean
  logit error against float32 fell from 0.39 to 0.11, at no measurable cost in speed;
- the FFN and attention products all int8, embeddings float: keeping the FFN down-projections
  in float32 (their GELU inputs carry outliers) cut the logit error by two thirds but cost a
  third of the speed, and which layer matters most depends on the trained delta;
- one exchange per call (`DEFAULT_BATCH`): no padding at all, activations that stay in cache (25%
  faster than batches of 32), and a verdict that does not depend on which other exchanges share
  its batch, which it would otherwise, since dynamic quantisation takes one activation range per
  call;
- worker threads that sleep between ops (`session.intra_op.allow_spinning` 0): spinning workers
  fight any other process for the cores, 17% slower on a shared machine;
- parallel exchanges, not parallel ops: one single-threaded session run per core, each on its own
  exchanges (ONNX Runtime releases the GIL while it runs). One exchange's ops are too small to
  split well between threads: on 2 idle cores, 2 runs of 1 thread gave 141 exchanges/s where 1 run
  of 2 threads gave 101 (and 128 with spinning threads). Each exchange is still run alone, so its
  logit does not depend on the worker or on its neighbours.

Cache: one file per key under `$MODELBENCH_CACHE/onnx` (default `~/.cache/modelbench/onnx`, as
compressed SUTs use `compressed/`), the key a hash of what the file is made from: the model's
identity (card, delta and base weight hashes), the settings and the versions of the tools that
write it. A file is written beside its place and renamed into it, with a JSON sidecar holding its
sha256; a file whose hash or whose loading fails is rebuilt, never trusted.
"""

import importlib.metadata
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from modelbench.cache import cache_dir
from modelbench.errors import UserError
from modelbench.hashing import file_sha256, stable_hash

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
OUTPUT_NAME = "logit"
OPSET = 17
DEFAULT_BATCH = 1
# The packages whose versions shape the built file (the exporter's graph, the optimizer's fusions,
# the quantiser's ops) or how it runs.
TOOLS = ("onnxruntime", "onnx", "torch", "transformers")


class Quantisation(BaseModel):
    """How the exported float graph is turned into the file that runs (all of it is in the key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    int8: bool = True  # False: the fused float32 graph, unquantised
    weight_type: Literal["QInt8", "QUInt8"] = "QInt8"
    per_channel: bool = True
    fuse: bool = True  # onnxruntime.transformers.optimizer's BERT fusions before quantising
    op_types: tuple[str, ...] = ("MatMul", "Attention")


INT8 = Quantisation()
FLOAT32 = Quantisation(int8=False)


class BuildInfo(BaseModel):
    """The sidecar of a cached file: what it is, and the sha256 that says it is whole."""

    key: str
    sha256: str
    quantisation: Quantisation
    tools: dict[str, str]
    fusions: dict[str, int]
    build_seconds: float


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools in `TOOLS` ("missing" for one that is not installed)."""
    versions = {}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def cache_root() -> Path:
    """$MODELBENCH_CACHE/onnx, else ~/.cache/modelbench/onnx."""
    return cache_dir("onnx")


def cache_key(identity: dict[str, Any], quantisation: Quantisation) -> str:
    return stable_hash(
        {
            "format": CACHE_FORMAT,
            "opset": OPSET,
            "model": identity,
            "quantisation": quantisation.model_dump(mode="json"),
            "tools": tool_versions(),
        },
        length=24,
    )


def export_float(net: Any, out: Path) -> None:
    """Export `net.logits(input_ids, token_type_ids, attention_mask)` with dynamic batch and length.

    TorchScript tracing (`dynamo=False`): its BERT graph is the one onnxruntime's transformer
    optimizer knows how to fuse, and it needs no onnxscript. The encoder is traced with eager
    attention (plain MatMul/Softmax, which the optimizer fuses into one Attention op) and on a
    padded example, so that the mask's path is traced, not folded away.
    """
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.head = net.encoder, net.head

        def forward(self, input_ids: Any, token_type_ids: Any, attention_mask: Any) -> Any:
            return net.logits(input_ids, token_type_ids, attention_mask)

    ids = (torch.arange(32, dtype=torch.long).reshape(2, 16) + 100) % net.encoder.config.vocab_size
    types = torch.zeros_like(ids)
    types[:, 8:] = 1
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUT_NAMES} | {OUTPUT_NAME: {0: "batch"}}
    before = getattr(net.encoder.config, "_attn_implementation", None)
    net.encoder.set_attn_implementation("eager")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Logits().eval(),
                (ids, types, mask),
                str(out),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    finally:
        if before:
            net.encoder.set_attn_implementation(before)


def fuse(source: Path, out: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """onnxruntime's BERT fusions; returns the count of each fused op it made."""
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(
        str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
    )
    model.save_model_to_file(str(out))
    return {op: n for op, n in model.get_fused_operator_statistics().items() if n}


def quantise(source: Path, out: Path, quantisation: Quantisation) -> None:
    """Int8 weights (per `quantisation`); activations are quantised per call, at run time."""
    # The quantiser logs advice through the root logger; a build should not print it into a run.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        _quantize_dynamic(source, out, quantisation)
    finally:
        root.setLevel(level)


def _quantize_dynamic(source: Path, out: Path, quantisation: Quantisation) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(out),
        weight_type=QuantType[quantisation.weight_type],
        per_channel=quantisation.per_channel,
        op_types_to_quantize=list(quantisation.op_types),
        # Fused ops are contrib ops that ONNX shape inference cannot type: their outputs are float.
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )


def build(net: Any, out: Path, quantisation: Quantisation, key: str) -> BuildInfo:
    """Write the runnable file for `net` to `out` (through a scratch folder beside it)."""
    started = time.perf_counter()
    config = net.encoder.config
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out.parent) as scratch:
        current = Path(scratch) / "float.onnx"
        export_float(net, current)
        fusions: dict[str, int] = {}
        if quantisation.fuse:
            fused = Path(scratch) / "fused.onnx"
            fusions = fuse(current, fused, config.num_attention_heads, config.hidden_size)
            current = fused
        if quantisation.int8:
            quantise(current, Path(scratch) / "int8.onnx", quantisation)
            current = Path(scratch) / "int8.onnx"
        os.replace(current, out)
    return BuildInfo(
        key=key,
        sha256=file_sha256(out),
        quantisation=quantisation,
        tools=tool_versions(),
        fusions=fusions,
        build_seconds=round(time.perf_counter() - started, 2),
    )


class OnnxNet:
    """A loaded ONNX Runtime session of a cross-encoder: logits for encoded (prompt, response) pairs."""

    def __init__(self, session: Any, info: BuildInfo, path: Path, built_now: bool, workers: int = 1) -> None:
        self.session = session
        self.info = info
        self.path = path
        self.built_now = built_now  # False: the file came from the cache
        self.workers = max(1, workers)  # concurrent single-threaded runs (see the module's notes)

    def logits(
        self, encoded: Sequence[tuple[list[int], list[int]]], batch_size: int = DEFAULT_BATCH, pad_id: int = 0
    ) -> np.ndarray:
        """Logits in order. Rows go in length order, each batch padded to its own longest row
        (no kernel is compiled per shape here, so there is nothing to gain from rounding up)."""
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        out = np.empty(len(encoded), dtype=np.float64)
        chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

        def run(mine: Sequence[list[int]]) -> None:
            for chunk in mine:
                width = max(len(encoded[i][0]) for i in chunk)
                arrays = padded_arrays([encoded[i] for i in chunk], width, pad_id)
                out[chunk] = self.session.run([OUTPUT_NAME], dict(zip(INPUT_NAMES, arrays, strict=True)))[0]

        if self.workers == 1 or len(chunks) < 2:
            run(chunks)
            return out
        from concurrent.futures import ThreadPoolExecutor

        # Worker k takes every k-th chunk of the length order: alike shares of short and long rows.
        with ThreadPoolExecutor(self.workers, thread_name_prefix="minilm-ce-onnx") as pool:
            list(pool.map(run, [chunks[k :: self.workers] for k in range(self.workers)]))
        return out


def padded_arrays(
    rows: Sequence[tuple[list[int], list[int]]], width: int, pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input_ids, token_type_ids, attention_mask) as int64 arrays, right-padded to `width`."""
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for row, (i, t) in enumerate(rows):
        ids[row, : len(i)] = i
        types[row, : len(t)] = t
        mask[row, : len(i)] = 1
    return ids, types, mask


def session_for(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per run; `threads` runs go at once (OnnxNet.workers).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: a run's output is the benchmark's, not ORT's notes
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _cached(path: Path, sidecar: Path, key: str, threads: int) -> OnnxNet | None:
    """The cache entry as a loaded session, or None when it is absent, partial, altered or unloadable."""
    if not (path.is_file() and sidecar.is_file()):
        return None
    try:
        info = BuildInfo.model_validate_json(sidecar.read_bytes())
        if info.key != key or file_sha256(path) != info.sha256:
            log.warning("minilm-ce: the cached ONNX file %s is damaged; rebuilding it", path.name)
            return None
        return OnnxNet(session_for(path), info, path, built_now=False, workers=threads)
    except Exception as error:  # onnxruntime's load errors (InvalidProtobuf, Fail) are plain Exceptions
        log.warning("minilm-ce: cannot use the cached ONNX file %s (%s); rebuilding it", path.name, error)
        return None


def load_or_build(
    make_net: Callable[[], Any],
    identity: dict[str, Any],
    quantisation: Quantisation,
    threads: int,
    root: Path | None = None,
) -> OnnxNet:
    """The cached runnable file for this model and settings, built from `make_net()` when absent.

    `make_net` is called only on a build, so a cached model never loads torch weights. Two
    processes that build the same key at once each write their own scratch files and rename them
    into place; both files are whole, and the sidecar's hash tells a reader whether the pair it sees
    belongs together (when not, it rebuilds).
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError(
            "minilm-ce's default runtime needs onnxruntime (pip install -e .), or use minilm-ce@float32"
        ) from None
    key = cache_key(identity, quantisation)
    folder = Path(root) if root else cache_root()
    path, sidecar = folder / f"{key}.onnx", folder / f"{key}.json"
    found = _cached(path, sidecar, key, threads)
    if found is not None:
        return found
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{key}-", suffix=".onnx", delete=False) as tmp:
            scratch = Path(tmp.name)
        try:
            info = build(make_net(), scratch, quantisation, key)
            session = session_for(scratch)
            os.replace(scratch, path)
        finally:
            scratch.unlink(missing_ok=True)
        _write_atomically(sidecar, info.model_dump_json(indent=2))
    except UserError:
        raise
    except Exception as error:  # the exporter, optimizer and quantiser raise many kinds
        first = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        raise UserError(f"cannot build minilm-ce's ONNX model in {folder}: {first}") from None
    log.info("minilm-ce: built %s in %.1fs", path, info.build_seconds)
    return OnnxNet(session, info, path, built_now=True, workers=threads)


def _write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.stem}-", suffix=".json", delete=False, encoding="utf-8"
    ) as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)
