"""Local transformers models as SUTs: chat template, left padding, length-sorted greedy batches.

The three steps of `SUT`: `build_request` (pure: each item's chat messages), `call` (the only
step on the device: chat template, tokenising, greedy generation and decoding, in a worker thread
so that the event loop keeps feeding other SUTs and graders while the CPU or GPU is busy),
`parse_response` (pure: decoded completions to SUTResponses).
"""

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbench.core import SUTResponse, TestItem
from modelbench.errors import UserError
from modelbench.specs import HFSpec
from modelbench.suts.base import SUT
from modelbench.suts.entries import Weights
from modelbench.suts.hf_loading import (
    LoadedModel,
    check_model_path,
    load_causal_lm,
    model_identity,
    pick_device,
    resolve_dtype,
)
from modelbench.suts.options import SUTOptions

log = logging.getLogger("modelbench")

PLAIN_FORMAT = "{system}User: {prompt}\nAssistant:"
AUTO_BATCH = {"cpu": 32, "cuda": 64}
STATIC_CACHE_BUCKET = 256


@dataclass
class GenerationRequest:
    """Step 1's product: each item's chat messages, in item order."""

    messages: list[list[dict[str, str]]]


@dataclass
class Generation:
    """Step 2's product: per item, the decoded completion and its token counts; one latency for
    the batch."""

    texts: list[str]
    prompt_tokens: list[int]
    completion_tokens: list[int]
    latency_s: float


class HuggingFaceSUT(SUT[GenerationRequest, Generation]):
    """A local causal LM. `options` is the run's SUTOptions, whole: it reads max_new_tokens,
    batch_size (None: by device), device (None: cuda when present) and kv_cache. `system_prompt`
    and `dtype` (None: by device) are the adapter's own."""

    # Length-sorted batches, and log-probabilities of given continuations (an LLM judge reads
    # its verdict by likelihood).
    capabilities = frozenset({"batching", "choice_scores", "first_token_scores", "accelerator"})

    @classmethod
    def from_spec(cls, uid: str, source: Any, options: SUTOptions, metadata: dict[str, Any]) -> SUT:
        """The factory `make_sut` calls: `hf:PATH`, or a registry entry with weights. A path that
        holds no model fails here, before any work."""
        if isinstance(source, HFSpec):
            weights = Weights(path=source.path)
        elif getattr(source, "weights", None) is not None:
            weights = source.weights
        else:
            raise UserError(f"SUT '{uid}': registry entry names no weights")
        sut = cls(uid, weights, options, metadata)
        check_model_path(sut.model_path)
        return sut

    def __init__(
        self,
        uid: str,
        model_path: Path | Weights,
        options: SUTOptions | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        system_prompt: str | None = None,
        dtype: str | None = None,
    ):
        self.uid = uid
        # Registry weights are located here, by the adapter that loads them (in the package, at a
        # path, or in the Hugging Face cache).
        self.model_path = model_path.locate() if isinstance(model_path, Weights) else Path(model_path)
        self.options = options or SUTOptions()
        self.system_prompt = system_prompt
        self.dtype = dtype or self.options.dtype
        self._metadata = metadata or {}
        # The cache asked for; becomes "dynamic" when an automatic static cache is not supported.
        self.kv_cache: str | None = self.options.kv_cache
        self._static_length = 0
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    @property
    def max_new_tokens(self) -> int:
        return self.options.max_new_tokens

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        if self.options.batch_size:
            return self.options.batch_size
        device = pick_device(self.options.device)
        return AUTO_BATCH["cuda" if device.startswith("cuda") else "cpu"]

    def fingerprint(self) -> dict[str, Any]:
        return {
            "adapter": "huggingface",
            "model": model_identity(self.model_path),
            "max_new_tokens": self.max_new_tokens,
            "decoding": "greedy",
            "system_prompt": self.system_prompt,
            # bf16 and fp32 can pick different greedy tokens: a response made in one is not
            # reused for a run in the other.
            "dtype": resolve_dtype(pick_device(self.options.device), self.dtype),
        }

    def metadata(self) -> dict[str, Any]:
        return {"uid": self.uid, "adapter": "huggingface", "model_path": str(self.model_path)} | (
            self._metadata
        )

    # -- step 0: load once, lazily -------------------------------------------------------------
    def _ensure_loaded(self) -> LoadedModel:
        with self._lock:
            if self._loaded is None:
                started = time.perf_counter()
                self._loaded = load_causal_lm(self.model_path, self.options.device, self.dtype)
                log.info("loaded %s in %.1fs", self.uid, time.perf_counter() - started)
            return self._loaded

    # -- step 1: native request ----------------------------------------------------------------
    def build_request(self, items: list[TestItem]) -> GenerationRequest:
        return GenerationRequest(messages=[self._messages(item.text) for item in items])

    def _messages(self, text: str) -> list[dict[str, str]]:
        messages = [{"role": "user", "content": text}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def build_prompts(self, tokenizer: Any, items: list[TestItem]) -> list[str]:
        """Chat-formatted prompt strings for these items (the request, rendered by the tokenizer)."""
        return self.render(tokenizer, self.build_request(items).messages)

    def render(self, tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[str]:
        """Prompt strings in the model's chat template; base models without one get a plain format."""
        if getattr(tokenizer, "chat_template", None):
            return [
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                for messages in conversations
            ]
        log.warning("%s has no chat template; using a plain User/Assistant format", self.uid)
        prompts = []
        for messages in conversations:
            system = "".join(f"{m['content']}\n" for m in messages if m["role"] == "system")
            prompt = next(m["content"] for m in reversed(messages) if m["role"] == "user")
            prompts.append(PLAIN_FORMAT.format(system=system, prompt=prompt))
        return prompts

    # -- step 2: call --------------------------------------------------------------------------
    async def call(self, request: GenerationRequest) -> Generation:
        return await asyncio.to_thread(self.call_sync, request)

    def call_sync(self, request: GenerationRequest) -> Generation:
        """Step 2 in the calling thread: load once, then render, generate and decode one batch."""
        loaded = self._ensure_loaded()
        started = time.perf_counter()
        with self._lock:
            prompts = self.render(loaded.tokenizer, request.messages)
            completions, prompt_lengths = self.generate(loaded, prompts)
            texts = loaded.tokenizer.batch_decode(completions, skip_special_tokens=True)
        return Generation(
            texts=texts,
            prompt_tokens=prompt_lengths,
            completion_tokens=[len(ids) for ids in completions],
            latency_s=time.perf_counter() - started,
        )

    def generate(self, loaded: LoadedModel, prompts: list[str]) -> tuple[list[list[int]], list[int]]:
        """Greedy generation for one batch: completion token ids (eos stripped), prompt lengths."""
        import torch

        tokenizer, model = loaded.tokenizer, loaded.model
        static = self.cache_kind(loaded.device) == "static"
        real = len(prompts)
        if static and real < self.batch_size:
            # A compiled decoding step is specialised to the batch size: a short last batch
            # would recompile (tens of seconds), so it is filled up with copies and cut after.
            prompts = prompts + [prompts[0]] * (self.batch_size - real)
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = {k: v.to(loaded.device) for k, v in encoded.items()}
        extra: dict[str, Any] = {}
        if static:
            extra = {"cache_implementation": "static", "max_cache_len": self._static_cache_length(encoded)}
        arguments = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": False,
            "pad_token_id": tokenizer.pad_token_id,
            "stopping_criteria": _stop_when(self._cancelled),
        }
        with torch.inference_mode():
            try:
                output = model.generate(**encoded, **arguments, **extra)
            except ValueError as exc:
                if not extra or self.kv_cache == "static":
                    raise
                # Chosen automatically, not asked for: a model whose architecture has no static
                # cache keeps transformers' dynamic one.
                log.warning("%s: no static KV cache (%s); using the dynamic one", self.uid, str(exc)[:200])
                self.kv_cache = "dynamic"
                output = model.generate(**encoded, **arguments)
        if self._cancelled.is_set():
            raise GenerationCancelled(f"{self.uid}: generation cancelled")
        generated = output[:real, encoded["input_ids"].shape[1] :].tolist()
        prompt_lengths = encoded["attention_mask"][:real].sum(dim=1).tolist()
        stop_ids = _eos_ids(model, tokenizer)
        completions = []
        for row in generated:
            end = next((i for i, token in enumerate(row) if token in stop_ids), len(row))
            completions.append(row[:end])
        return completions, [int(n) for n in prompt_lengths]

    def cache_kind(self, device: str) -> str:
        """The KV cache generate() uses: static (compiled decoding) on a GPU, dynamic on a CPU.

        On an H200 a static cache with transformers' compiled decoding step generated 1.6x the
        tokens/s of the dynamic cache for an 8B model at batch 128 and 3x at batch 1, after a
        30-40 s compile per batch shape (benchmarks/gpu_generate.py); on a CPU nothing is
        compiled and the static cache only costs memory.
        """
        if self.kv_cache:
            return self.kv_cache
        return "static" if device.startswith("cuda") else "dynamic"

    def _static_cache_length(self, encoded: dict[str, Any]) -> int:
        """Cache length rounded up to a bucket and never shrinking, so that every batch of a run
        (sorted longest first) reuses one compiled shape."""
        needed = int(encoded["input_ids"].shape[1]) + self.max_new_tokens
        bucket = -(-needed // STATIC_CACHE_BUCKET) * STATIC_CACHE_BUCKET
        self._static_length = max(self._static_length, bucket)
        return self._static_length

    # -- step 3: parse -------------------------------------------------------------------------
    def parse_response(self, items: list[TestItem], native: Generation) -> list[SUTResponse]:
        return [
            SUTResponse(
                sut_uid=self.uid,
                item_uid=item.uid,
                text=text.strip(),
                latency_s=native.latency_s,
                prompt_tokens=n_prompt,
                completion_tokens=n_completion,
            )
            for item, text, n_prompt, n_completion in zip(
                items, native.texts, native.prompt_tokens, native.completion_tokens, strict=True
            )
        ]

    # -- outside the three steps ---------------------------------------------------------------
    def cancel(self) -> None:
        self._cancelled.set()

    # -- capabilities: scores of given continuations (they run on the device, called from a thread)
    def choice_logprobs(self, texts: list[str], prefix: str, choices: list[str]) -> list[list[float]]:
        """Log-likelihood of each choice as the start of the answer to each text (after `prefix`).

        A small model that cannot follow an output format can still rank "SAFE" against
        "UNSAFE"; scoring the choices directly gives every item a probability, never a parse
        failure, and costs one forward pass instead of a generation.
        """
        import torch

        loaded = self._ensure_loaded()
        tokenizer, model = loaded.tokenizer, loaded.model
        with self._lock:
            choice_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
            rows = []
            for context_ids in self._context_ids(tokenizer, texts, prefix):
                rows += [(context_ids, ids) for ids in choice_ids]
            scores: list[float] = []
            size = max(1, self.batch_size)
            for start in range(0, len(rows), size):
                chunk = rows[start : start + size]
                sequences = [c + ids for c, ids in chunk]
                width = max(len(s) for s in sequences)
                input_ids, mask = _left_padded(sequences, tokenizer.pad_token_id, loaded.device)
                keep = max(len(ids) for _, ids in chunk) + 1
                with torch.inference_mode():
                    # Only the last positions matter: full-vocabulary logits for every position of
                    # a long prompt would cost gigabytes.
                    logits = model(
                        input_ids=input_ids, attention_mask=mask, logits_to_keep=keep
                    ).logits.float()
                logprobs = torch.log_softmax(logits[:, :-1, :], dim=-1)  # position j predicts token j + 1
                offset = width - keep  # logits[:, j] belongs to sequence position offset + j
                for row, (_context, ids) in enumerate(chunk):
                    positions = range(width - len(ids) - 1 - offset, width - 1 - offset)
                    scores.append(
                        sum(float(logprobs[row, pos, tok]) for pos, tok in zip(positions, ids, strict=True))
                    )
        return [scores[i : i + len(choices)] for i in range(0, len(scores), len(choices))]

    def _context_ids(self, tokenizer: Any, texts: list[str], prefix: str) -> list[list[int]]:
        """Token ids of each text as a chat prompt followed by `prefix` (the judge's answer start)."""
        contexts = [p + prefix for p in self.render(tokenizer, [self._messages(t) for t in texts])]
        return [tokenizer(c, add_special_tokens=False)["input_ids"] for c in contexts]

    def first_token_logprobs(
        self, texts: list[str], prefix: str, choices: list[str]
    ) -> list[list[float]] | None:
        """Log p of each choice's first token right after `prefix`, one forward pass per text.

        `choice_logprobs` scores whole choices, one sequence per (text, choice): two
        forward passes per item for SAFE/UNSAFE. When the choices' first tokens differ, which is the
        case for " SAFE" / " UNSAFE" in SmolLM2's tokenizer (" SAF" vs " UN"), the first token already
        decides between them, and both log-probabilities sit in the same row of logits: half the cost.
        Returns None when two choices share a first token; the caller then scores whole sequences.
        Texts are sorted by token length so each batch pads to about its own length.
        """
        import torch

        loaded = self._ensure_loaded()
        tokenizer, model = loaded.tokenizer, loaded.model
        firsts = [tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in choices]
        if len(set(firsts)) < len(firsts):
            return None
        scores: list[list[float]] = [[] for _ in texts]
        with self._lock:
            ids = self._context_ids(tokenizer, texts, prefix)
            order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            size = max(1, self.batch_size)
            for start in range(0, len(order), size):
                chunk = order[start : start + size]
                input_ids, mask = _left_padded([ids[i] for i in chunk], tokenizer.pad_token_id, loaded.device)
                # Left padding: real tokens get positions 0.. as if the row were alone.
                positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
                with torch.inference_mode():
                    logits = (
                        model(
                            input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1
                        )
                        .logits[:, -1, :]
                        .float()
                    )
                logprobs = torch.log_softmax(logits, dim=-1)[:, firsts].cpu().tolist()
                for row, i in enumerate(chunk):
                    scores[i] = logprobs[row]
        return scores


def _left_padded(sequences: list[list[int]], pad: int | None, device: str) -> tuple[Any, Any]:
    """(input_ids, attention_mask) with every sequence right-aligned, as generation pads."""
    import torch

    width = max(len(s) for s in sequences)
    fill = pad if pad is not None else 0
    input_ids = torch.tensor([[fill] * (width - len(s)) + s for s in sequences], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=device)
    return input_ids, mask


class GenerationCancelled(Exception):
    pass


def _stop_when(event: threading.Event) -> Any:
    """A stopping criterion that ends generation for the whole batch once `event` is set."""
    import torch

    from modelbench.suts.hf_loading import LOADING_LOCK

    with LOADING_LOCK:  # first touches of transformers' lazy attributes are not thread-safe
        from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full(
                (input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([_Cancelled()])


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
