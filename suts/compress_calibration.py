"""Calibration and held-out text for compression, tokenized, and the perplexity measured on it.

Both text sets come from the benchmark's own prompts, split by a hash of the text so that the
held-out slice never depends on the seed or the calibration size: perplexities then compare
across every compressed variant of a base. A change here that changes the calibration tokens must
bump CACHE_FORMAT in `modelbench.suts.compress`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from modelbench.errors import UserError
from modelbench.hashing import stable_hash

if TYPE_CHECKING:
    import torch

DEFAULT_CALIBRATION_SIZE = 64
DEFAULT_HELDOUT_SIZE = 64
CALIBRATION_SET = "mb-full"
# One in HELDOUT_EVERY prompts (by text hash) is reserved for perplexity, never for calibration.
HELDOUT_EVERY = 8
MAX_TOKENS = 256
BATCH_SIZE = 16


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
