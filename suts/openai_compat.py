"""OpenAI-compatible chat APIs as SUTs: OpenAI, vLLM, llama.cpp's server, Ollama, Together.

The three steps of `SUT`: `build_request` (pure: one chat body per item), `call` (the only
network step: every body sent over one aiohttp session, concurrently, with retries),
`parse_response` (pure: each raw body to a SUTResponse). We read the raw body rather than a client
library's parsed object so that a non-JSON body, a response without choices and a content-filter stop each
become their own recorded outcome instead of one opaque exception.

Transient failures (429, 5xx, timeouts, refused connections) are retried with backoff and jitter,
honouring Retry-After, up to `max_attempts`; after that the item is an error row (never a safe or
empty answer) and the run goes on. Every attempt is counted here.
"""

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from modelbench.core import SUTResponse, TestItem
from modelbench.errors import UserError
from modelbench.secrets import get_secret, redact
from modelbench.specs import OpenAICompatSpec, OpenAISpec
from modelbench.suts.base import SUT
from modelbench.suts.concurrency import AdaptiveLimiter
from modelbench.suts.http_json import JsonClient, TransportError
from modelbench.suts.options import Endpoint, SUTOptions
from modelbench.suts.retry import RetryPolicy

PREFLIGHT_TIMEOUT_S = 15.0
# Marks the one-token probe, so that server logs (and our mock server) can tell it from the run.
PREFLIGHT_HEADER = "X-Modelbench-Preflight"
RETRIABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
ENDPOINT_PATHS = {"chat": "/chat/completions", "completions": "/completions"}


@dataclass
class RawReply:
    status: int
    body: str
    latency_s: float


@dataclass
class ChatRequests:
    """Step 1's product: one chat-completions body per item, in item order."""

    bodies: list[dict[str, Any]]


@dataclass
class Sent:
    """What sending one body came to: the reply, or None and the error; attempts made."""

    reply: RawReply | None
    error: str
    attempts: int


@dataclass
class ChatReplies:
    """Step 2's product: one `Sent` per body, in order."""

    sent: list[Sent]


CONGESTION_STATUS = {429, 503, 504}


class TransientError(Exception):
    """A failure worth another attempt; `retry_after` is the server's hint, if any. `congestion`:
    the failure says the server has more than it can take (a timeout, 429, 503, 504), so the
    adaptive limiter sends less."""

    def __init__(self, message: str, retry_after: str | None = None, congestion: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.congestion = congestion


class PermanentError(Exception):
    """A failure that another attempt will not fix (bad request, auth, unknown model)."""


OPENAI_BASE_URL = "https://api.openai.com/v1"


class OpenAICompatSUT(SUT[ChatRequests, ChatReplies]):
    """An OpenAI-compatible chat API. `options` is the run's SUTOptions, whole: it reads
    max_new_tokens, temperature, concurrency, timeout_s and max_attempts.

    `system_prompt`, `adaptive_concurrency` (AIMD between 1 and `options.concurrency`, see
    suts/concurrency.py; False keeps it fixed) and `retry` (the backoff shape; the number of
    attempts is always `options.max_attempts`) are the adapter's own knobs.
    """

    batch_size = 1

    @classmethod
    def from_spec(cls, uid: str, source: Any, options: SUTOptions, metadata: dict[str, Any]) -> SUT:
        """The factory `make_sut` calls: `openai:MODEL` (a key is required), `openai-compat:MODEL@URL`
        or a registry entry with an endpoint (a key only where the server wants one)."""
        key_required = isinstance(source, OpenAISpec)
        if key_required:
            endpoint = Endpoint(base_url=OPENAI_BASE_URL, model=source.model, api_key_env="OPENAI_API_KEY")
        elif isinstance(source, OpenAICompatSpec):
            endpoint = Endpoint(
                base_url=source.base_url, model=source.model, api_key_env="OPENAI_COMPAT_API_KEY"
            )
        elif getattr(source, "endpoint", None) is not None:
            endpoint = source.endpoint
        else:
            raise UserError(f"SUT '{uid}': an openai_compat entry needs an endpoint")
        meta = metadata | {"base_url": endpoint.base_url}
        return cls(uid, endpoint, options, metadata=meta, key_required=key_required)

    def __init__(
        self,
        uid: str,
        endpoint: Endpoint,
        options: SUTOptions | None = None,
        api_key: str | None = None,
        metadata: dict | None = None,
        *,
        key_required: bool = False,
        system_prompt: str | None = None,
        adaptive_concurrency: bool = True,
        retry: RetryPolicy | None = None,
    ):
        """`api_key`: given, or read from the endpoint's `api_key_env` (the environment or the
        secrets file); `key_required`: no key is then one line, not a run of 401s."""
        self.uid = uid
        self.endpoint = endpoint.model_copy()  # its own: a judge may learn its model at preflight
        self.options = options or SUTOptions()
        if api_key is None and endpoint.api_key_env:
            api_key = get_secret(endpoint.api_key_env, self.options.secrets_file)
        if key_required and not api_key:
            raise UserError(
                f"SUT '{uid}' needs an API key: set {endpoint.api_key_env} or put it in a secrets file"
            )
        self.system_prompt = system_prompt
        self.retry = (retry or RetryPolicy()).model_copy(update={"max_attempts": self.options.max_attempts})
        self.concurrency = self.options.concurrency
        self._api_key = api_key or "EMPTY"  # local servers ignore it; some proxies want a header
        self._metadata = metadata or {}
        self._client: JsonClient | None = None
        self.limiter = AdaptiveLimiter(self.options.concurrency, self.options.timeout_s, adaptive_concurrency)

    def fingerprint(self) -> dict[str, Any]:
        # No API key here: fingerprints go into store keys and records.
        return {
            "adapter": "openai_compat",
            "base_url": self.endpoint.base_url.rstrip("/"),
            "model": self.endpoint.model,
            "temperature": self.options.temperature,
            "max_tokens": self.options.max_new_tokens,
            "system_prompt": self.system_prompt,
        }

    def metadata(self) -> dict[str, Any]:
        limiter = self.limiter
        concurrency = {
            "maximum": limiter.maximum,
            "adaptive": limiter.adaptive,
            "final": limiter.current,
            "lowest": limiter.lowest,
            "decreases": limiter.decreases,
        }
        return {
            "uid": self.uid,
            "adapter": "openai_compat",
            "model": self.endpoint.model,
            "concurrency": concurrency,
        } | self._metadata

    def _short(self, text: str) -> str:
        """Server text for an error message, shortened, with our key and anything shaped like a
        credential removed: servers echo requests back in error bodies, and these messages reach
        the console, the record, the report and the store."""
        return _short(redact(text, self._api_key))

    # -- step 1 --------------------------------------------------------------------------------
    def build_request(self, items: list[TestItem]) -> ChatRequests:
        return ChatRequests(bodies=[self.chat_body(item) for item in items])

    def chat_body(self, item: TestItem) -> dict[str, Any]:
        messages = [{"role": "user", "content": item.text}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": self.options.temperature,
            "max_tokens": self.options.max_new_tokens,
        }

    # -- step 2 --------------------------------------------------------------------------------
    async def call(self, request: ChatRequests) -> ChatReplies:
        """Every body at once, each within the adaptive concurrency limit and with retries."""
        sent = await asyncio.gather(*(self.send(body) for body in request.bodies))
        return ChatReplies(sent=[Sent(reply, error, attempts) for reply, error, attempts in sent])

    def _ensure_client(self) -> JsonClient:
        if self._client is None:
            # A kept-alive connection per request in flight (suts/http_json.py says why aiohttp).
            self._client = JsonClient(
                self.endpoint.base_url, self._api_key, self.options.timeout_s, self.options.concurrency
            )
        return self._client

    async def post_once(
        self, request: dict[str, Any], endpoint: str = "chat", headers: dict[str, str] | None = None
    ) -> RawReply:
        """One HTTP attempt. Raises TransientError or PermanentError; returns any 2xx body as text.
        `endpoint` is "chat" (/chat/completions) or "completions" (/completions, raw prompts)."""
        client = self._ensure_client()
        started = time.perf_counter()
        try:
            reply = await client.request("POST", ENDPOINT_PATHS[endpoint], request, headers)
        except TransportError as exc:
            if exc.timed_out:
                timeout = self.options.timeout_s
                raise TransientError(f"timed out after {timeout:g}s", congestion=True) from None
            raise TransientError(f"connection error: {exc.kind}: {self._short(exc.message)}") from None
        if not 200 <= reply.status < 300:  # a redirect or an informational status is no answer either
            message = f"HTTP {reply.status}: {self._short(reply.body)}"
            if reply.status in RETRIABLE_STATUS:
                raise TransientError(message, reply.retry_after, congestion=reply.status in CONGESTION_STATUS)
            raise PermanentError(message)
        return RawReply(status=reply.status, body=reply.body, latency_s=time.perf_counter() - started)

    # -- before the run ------------------------------------------------------------------------
    async def served_models(self, who: str) -> list[str] | None:
        """The model names the server lists (GET /models), or None when it has no such list.
        Raises UserError when the server cannot be reached or refuses the key."""
        client = self._ensure_client()
        url = self.endpoint.base_url
        try:
            raw = await client.request("GET", "/models", timeout_s=PREFLIGHT_TIMEOUT_S)
        except TransportError as exc:
            raise UserError(f"{who}: cannot reach {url}: {_connection_problem(exc)}") from None
        status = raw.status
        if not 200 <= status < 300:
            if status in (401, 403):
                key = f"set {self.endpoint.api_key_env}" if self.endpoint.api_key_env else "give a key"
                answer = f"HTTP {status}: {self._short(raw.body)}"
                raise UserError(f"{who}: {url} refused the API key ({answer}); {key}")
            if status in (404, 405, 501):
                return None
            answer = f"HTTP {status}: {self._short(raw.body)}"
            raise UserError(f"{who}: {url}/models answered {answer}")
        try:
            data = json.loads(raw.body).get("data")
            return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
        except (json.JSONDecodeError, AttributeError, TypeError):
            return None

    async def preflight(self, who: str, endpoint: str = "chat") -> None:
        """The model list, or else a one-token answer: a down server, a wrong URL or model name,
        or a refused key becomes one line in seconds instead of a run of errors. `endpoint` is
        the one the run will use ("completions" for graders that read first-token logprobs)."""
        served = await self.served_models(who)
        url, model = self.endpoint.base_url, self.endpoint.model
        if served is not None:
            # Ollama lists `llama3:latest` and answers to `llama3`.
            if model in served or f"{model}:latest" in served:
                return
            listed = ", ".join(served[:10]) + (" ..." if len(served) > 10 else "") or "nothing"
            raise UserError(
                f"{who}: {url} does not serve model '{model}' (it serves: {listed}); if it answers to "
                "names it does not list, run with --no-preflight"
            )
        if endpoint == "chat":
            probe = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        else:
            probe = {"model": model, "prompt": "Hi", "max_tokens": 1}
        try:
            await self.post_once(probe, endpoint, headers={PREFLIGHT_HEADER: "1"})
        except PermanentError as exc:
            raise UserError(f"{who}: {url} rejected a one-token request for '{model}': {exc}") from None
        except TransientError as exc:
            if exc.congestion and not str(exc).startswith("timed out"):
                return  # 429 or 503: the server is there and busy; the run's retries handle load
            raise UserError(
                f"{who}: {url} did not answer a one-token request for '{model}': {exc} (the run's "
                "--timeout); start the server, or raise --timeout if it is only slow"
            ) from None

    # -- step 3 --------------------------------------------------------------------------------
    def parse_response(self, items: list[TestItem], native: ChatReplies) -> list[SUTResponse]:
        return [
            self.parse_reply(item, sent.reply, sent.attempts)
            if sent.reply is not None
            else self._error(item, sent.error, sent.attempts)
            for item, sent in zip(items, native.sent, strict=True)
        ]

    def parse_reply(self, item: TestItem, reply: RawReply, attempts: int) -> SUTResponse:
        base = {"sut_uid": self.uid, "item_uid": item.uid, "latency_s": reply.latency_s, "attempts": attempts}
        try:
            body = json.loads(reply.body)
        except json.JSONDecodeError:
            return SUTResponse(
                **base, outcome="invalid_response", error=f"non-JSON body: {self._short(reply.body)}"
            )
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list):
            return SUTResponse(
                **base, outcome="invalid_response", error=f"no choices in body: {self._short(reply.body)}"
            )
        if not choices:
            return SUTResponse(**base, outcome="empty_choices", error="the response had no choices")
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        content = message.get("content")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        tokens = {
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
        }
        if choice.get("finish_reason") == "content_filter":
            return SUTResponse(**base, **tokens, outcome="content_filter", text=content or "")
        if not isinstance(content, str):
            return SUTResponse(**base, outcome="invalid_response", error="the choice has no text content")
        return SUTResponse(**base, **tokens, text=content)

    def _error(self, item: TestItem, message: str, attempts: int) -> SUTResponse:
        return SUTResponse(
            sut_uid=self.uid, item_uid=item.uid, outcome="error", error=message, attempts=attempts
        )

    # -- the loop (step 2, one body) -------------------------------------------------------------
    async def send(self, request: dict[str, Any], endpoint: str = "chat") -> tuple[RawReply | None, str, int]:
        """(reply or None, error message, attempts): retries transient failures with backoff,
        within this SUT's adaptive concurrency limit. Judges that speak this API reuse it."""
        self._ensure_client()
        policy = self.retry
        last = "no attempt made"
        for attempt in range(1, policy.max_attempts + 1):
            async with self.limiter.slot() as slot:
                try:
                    reply = await self.post_once(request, endpoint)
                    slot.outcome = "ok"
                    problem = malformed(reply.body)
                    if problem is None or attempt == policy.max_attempts:
                        return reply, "", attempt  # a persistent one is parsed, and fails, as it is
                    # Behind proxies and load balancers a 200 whose body is not a completion (an
                    # HTML error page) is as transient as a 502: ask again.
                    slot.outcome = "other"
                    last, retry_after = problem, None
                except PermanentError as exc:
                    return None, str(exc), attempt
                except TransientError as exc:
                    slot.outcome = "congested" if exc.congestion else "other"
                    last = str(exc)
                    retry_after = exc.retry_after
            if attempt < policy.max_attempts:
                await asyncio.sleep(policy.wait(attempt, retry_after))
        return None, f"{last} (gave up after {policy.max_attempts} attempts)", policy.max_attempts

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        self.limiter.rebind()  # the next event loop (preflight, then the run) gets fresh primitives


def malformed(body: str) -> str | None:
    """Why a 2xx body is not a completion (not JSON, or no `choices` list), or None when it is one."""
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        return f"non-JSON body: {_short(body)}"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("choices"), list):
        return f"no choices in body: {_short(body)}"
    return None


def _connection_problem(exc: TransportError) -> str:
    """What a failed connection means, in words a user can act on."""
    if exc.refused:
        return "connection refused (is the server running, and on this port?)"
    if exc.timed_out:
        return f"no answer within {PREFLIGHT_TIMEOUT_S:g}s"
    if exc.unknown_host:
        return f"unknown host ({_short(exc.message)})"
    return f"{exc.kind}: {_short(exc.message)}"


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
