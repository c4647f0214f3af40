"""Compressed variants of local models as SUTs: `BASE+TRANSFORM=ARG[+...]`.

A compressed SUT is a HuggingFace SUT whose weights are built on first use (transforms from
`compress.py`, calibrated on our own prompt texts) and cached on disk by base identity, chain,
calibration size and seed; afterwards it loads like any checkpoint. Its identity (and so its
stored responses) is known without building anything, so a re-run that reuses every response
never compresses at all.
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelbench.specs import TransformSpec
from modelbench.suts.base import SUT
from modelbench.suts.entries import Weights
from modelbench.suts.hf_loading import (
    LoadedModel,
    check_model_path,
    load_causal_lm,
    model_identity,
    pick_device,
)
from modelbench.suts.huggingface import HuggingFaceSUT
from modelbench.suts.options import SUTOptions

log = logging.getLogger("modelbench")


class CompressedSUT(HuggingFaceSUT):
    """A HuggingFace SUT on `base_path` compressed by `chain`; besides what the HuggingFace SUT
    reads, it reads calibration_size and calibration_seed from `options`."""

    @classmethod
    def from_spec(cls, uid: str, source: Any, options: SUTOptions, metadata: dict[str, Any]) -> SUT:
        """The factory `make_sut` calls, with the base resolved (`registry.CompressedSource`): the
        base's weights and the typed chain."""
        return cls(uid, source.base, source.chain, options, metadata)

    def __init__(
        self,
        uid: str,
        base: Path | Weights,
        chain: Sequence[TransformSpec],
        options: SUTOptions | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        cache_root: Path | None = None,
        **kwargs: Any,
    ):
        from modelbench.suts.compress import build_chain, canonical_chain, default_cache_root

        if isinstance(chain, str):
            raise TypeError("CompressedSUT takes parsed steps (modelbench.specs.parse_transforms), not text")
        super().__init__(uid, base, options, metadata, **kwargs)
        self.base_path = self.model_path
        check_model_path(self.base_path)  # a base that holds no model fails first, before any work
        # The steps arrive parsed (`modelbench.specs`); a bad value fails here, before any work.
        self.chain = canonical_chain(build_chain(chain))
        self.cache_root = Path(cache_root) if cache_root else default_cache_root()

    @property
    def calibration_size(self) -> int:
        return self.options.calibration_size

    @property
    def calibration_seed(self) -> int:
        return self.options.calibration_seed

    def fingerprint(self) -> dict[str, Any]:
        return super().fingerprint() | {
            "model": model_identity(self.base_path),
            "compression": {
                "chain": self.chain,
                "calibration_size": self.calibration_size,
                "calibration_seed": self.calibration_seed,
            },
        }

    def _cache_folder(self) -> Path:
        from modelbench.suts.compress import DEFAULT_HELDOUT_SIZE, cache_key

        dtype = "bfloat16" if pick_device(self.options.device).startswith("cuda") else "float32"
        key = cache_key(
            self.base_path,
            self.chain,
            self.calibration_size,
            self.calibration_seed,
            DEFAULT_HELDOUT_SIZE,
            dtype,
        )
        return self.cache_root / key

    def metadata(self) -> dict[str, Any]:
        from modelbench.suts.compress import load_cached

        meta = super().metadata() | {"base_path": str(self.base_path), "chain": self.chain}
        built = load_cached(self._cache_folder())
        if built is None:
            return meta | {"compression_metadata": None}
        details = built.model_dump(mode="json")
        return meta | {
            "compression_metadata": details,
            "sparsity": built.sparsity,
            "params": built.params_after,
            "params_dense": built.params_before,
        }

    def _ensure_loaded(self) -> LoadedModel:
        from modelbench.suts.compress import build_compressed

        with self._lock:
            if self._loaded is None:
                folder, meta = build_compressed(
                    self.base_path,
                    self.chain,
                    self.cache_root,
                    calibration_size=self.calibration_size,
                    seed=self.calibration_seed,
                    device=self.options.device,
                )
                log.info("%s: compressed checkpoint at %s (sparsity %.3f)", self.uid, folder, meta.sparsity)
                self.model_path = folder
                self._loaded = load_causal_lm(folder, self.options.device, self.dtype)
            return self._loaded
