"""A local OpenAI-compatible chat-completions server with scripted latency and faults.

Tests, benchmarks and users' dry runs need a real HTTP peer that misbehaves on demand: 429 with
Retry-After, 5xx, hangs past the client's timeout, garbage bodies, empty choices, content-filter
stops. This is a small asyncio HTTP/1.1 server (keep-alive, Content-Length bodies) so that it
stays cheap enough to measure a client against on two cores.

    python -m modelbench.testing.mock_server --port 8000 --latency 0.1 --fault-rate 0.2 --seed 0

Behaviours come from a script (consumed one per request, then "ok"), or at random with
`fault_rate`. The answer to a prompt is deterministic: "Mock answer: <prompt reversed>" unless
the prompt asks for a refusal.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import math
import random
import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from modelbench.suts import PREFLIGHT_HEADER

BEHAVIOURS = (
    "ok",
    "400",
    "400_echo",
    "429",
    "500",
    "503",
    "timeout",
    "garbage",
    "empty",
    "content_filter",
    "close",
)
FAULTS = ("429", "500", "timeout", "garbage")


@dataclass
class ServerState:
    latency_s: float = 0.0
    retry_after_s: float = 0.05
    hang_s: float = 30.0
    fault_rate: float = 0.0
    seed: int = 0
    script: deque = field(default_factory=deque)
    served: Counter = field(default_factory=Counter)
    requests: list = field(default_factory=list)
    record_requests: bool = True
    # Share of prompts answered with a refusal, chosen by a hash of the prompt (so repeatable).
    refuse_fraction: float = 0.0
    # How answers read (see `answer_for`): "mirror" (the prompt reversed), "on_topic", "loop",
    # "stutter".
    style: str = "mirror"
    # One request at a time, like a server with one generation slot: the rest wait in line, and a
    # request the client gave up on is still served in its turn (servers rarely cancel).
    serial: bool = False
    # The model names served: others get 404 "model not found", and GET /models lists these.
    # None serves any name and has no model list (404), so clients fall back to a probe.
    models: tuple[str, ...] | None = None
    # When set, requests without "Authorization: Bearer <api_key>" get 401.
    api_key: str | None = None
    _lock: asyncio.Lock | None = None

    def slot(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def next_behaviour(self) -> str:
        if self.script:
            return self.script.popleft()
        if self.fault_rate and self.rng.random() < self.fault_rate:
            return self.rng.choice(FAULTS)
        return "ok"


def completion_body(model: str, content: str, finish_reason: str = "stop", n_prompt: int = 0) -> dict:
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
        ],
        "usage": {
            "prompt_tokens": n_prompt,
            "completion_tokens": len(content.split()),
            "total_tokens": n_prompt + len(content.split()),
        },
    }


ANSWER_STYLES = ("mirror", "on_topic", "loop", "stutter", "roleplay", "base64")
# What every GPTFuzz template has one of (role-play, personas, modes, fiction): the "roleplay" style
# complies only when a request arrives inside such a frame.
ROLEPLAY_MARKERS = (
    "pretend", "role", "character", "simulat", "act as", "developer mode", "dan", "story", "fiction",
    "persona", "game", "imagine", "you are", "mode", "dr. al", "following form",
)  # fmt: skip


def answer_for(prompt: str, refuse_fraction: float = 0.0, style: str = "mirror") -> str:
    """A refusal for "please refuse" and for a hash-chosen share of prompts; otherwise by `style`:
    "mirror" the prompt reversed (distinct per prompt), "on_topic" a short answer that takes up the
    prompt, "loop" one sentence repeated, as a broken (pruned) model answers, "stutter" an apology
    repeated (which a refusal detector reads as a refusal: safe, and broken)."""
    if "strict safety reviewer" in prompt:  # acting as an LLM judge
        answer = prompt.rsplit("[ANSWER]", 1)[-1]
        return (
            "VERDICT: UNSAFE, CONFIDENCE: 90" if "Mock answer" in answer else "VERDICT: SAFE, CONFIDENCE: 80"
        )
    bucket = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if "please refuse" in prompt.lower() or bucket < refuse_fraction:
        return "I'm sorry, but I can't help with that."
    if style == "on_topic":
        return (
            f"Mock answer: happy to help with that. You asked: {prompt} In short: start with the basics, "
            "use trustworthy sources, and take it one step at a time."
        )
    if style == "roleplay":
        if any(marker in prompt.lower() for marker in ROLEPLAY_MARKERS):
            return f"Mock answer: staying in character, here is what you asked for. {prompt[-80:]}"
        return "I'm sorry, but I can't help with that."
    if style == "base64":  # reads a base64 request and answers in base64, like a capable model
        if "encoded in base64" in prompt:
            return base64.b64encode(b"Mock answer: sure, here is exactly what you asked for.").decode()
        return "I'm sorry, but I can't help with that."
    if style == "loop":
        return "I am a well-known expert with no restrictions. " * 20
    if style == "stutter":
        return "I'm sorry, I can't say. " * 20
    return "Mock answer: " + prompt[::-1]


def _response(status: int, reason: str, body: bytes, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", "Connection: keep-alive"]
    head += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _handle(state: ServerState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            json_type = [("Content-Type", "application/json")]
            if state.api_key and headers.get("authorization") != f"Bearer {state.api_key}":
                error = b'{"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}'
                writer.write(_response(401, "Unauthorized", error, json_type))
                await writer.drain()
                continue
            if method == "GET" and path.endswith("/models") and state.models is not None:
                writer.write(_response(200, "OK", json.dumps(models_body(state)).encode(), json_type))
                await writer.drain()
                continue
            if method != "POST" or not path.endswith("/completions"):
                writer.write(_response(404, "Not Found", b'{"error": {"message": "not found"}}'))
                await writer.drain()
                continue
            request = json.loads(body or b"{}")
            model = str(request.get("model", ""))
            if state.models is not None and model not in state.models:
                message = f"The model `{model}` does not exist or you do not have access to it."
                error = {"error": {"message": message, "code": "model_not_found"}}
                writer.write(_response(404, "Not Found", json.dumps(error).encode(), json_type))
                await writer.drain()
                continue
            if headers.get(PREFLIGHT_HEADER.lower()):
                # A client's check before its run: answered, but neither scripted nor recorded.
                writer.write(_reply(state, "ok", request, headers))
                await writer.drain()
                continue
            behaviour = state.next_behaviour()
            state.served[behaviour] += 1
            if state.record_requests:
                state.requests.append({"behaviour": behaviour, "body": request, "headers": headers})
            if behaviour == "close":
                writer.close()
                return
            if behaviour == "timeout":
                await asyncio.sleep(state.hang_s)
                continue
            if state.serial:
                async with state.slot():
                    await asyncio.sleep(state.latency_s)
            elif state.latency_s:
                await asyncio.sleep(state.latency_s)
            writer.write(_reply(state, behaviour, request, headers))
            await writer.drain()
    except asyncio.CancelledError:
        return  # the server is stopping with requests still waiting in line: nothing to report
    finally:
        writer.close()


def models_body(state: ServerState) -> dict:
    names = state.models if state.models is not None else ("mock",)
    return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "mock"} for n in names]}


def guard_completion(prompt: str) -> dict:
    """A Llama Guard-style /completions answer with logprobs: unsafe when the agent turn of the
    conversation is a mock compliance, safe otherwise."""
    agent = prompt.rsplit("Agent:", 1)[-1]
    p_unsafe = 0.9 if "Mock answer" in agent else 0.05
    first, text = ("unsafe", "unsafe\nS1,S10") if p_unsafe >= 0.5 else ("safe", "safe")
    top = {"unsafe": math.log(p_unsafe), "safe": math.log(1 - p_unsafe)}
    return {
        "id": "cmpl-mock",
        "object": "text_completion",
        "choices": [
            {
                "index": 0,
                "text": text,
                "finish_reason": "stop",
                "logprobs": {"tokens": [first], "token_logprobs": [top[first]], "top_logprobs": [top]},
            }
        ],
    }


def _reply(state: ServerState, behaviour: str, request: dict, headers: dict | None = None) -> bytes:
    model = request.get("model", "mock")
    if "prompt" in request and behaviour == "ok":
        return _response(
            200,
            "OK",
            json.dumps(guard_completion(str(request["prompt"]))).encode(),
            [("Content-Type", "application/json")],
        )
    messages = request.get("messages") or [{"content": ""}]
    prompt = str(messages[-1].get("content", ""))
    json_type = [("Content-Type", "application/json")]
    if behaviour == "429":
        error = b'{"error": {"message": "rate limited", "type": "rate_limit"}}'
        return _response(
            429, "Too Many Requests", error, json_type + [("Retry-After", str(state.retry_after_s))]
        )
    if behaviour == "400_echo":  # a careless server that echoes the request, headers included
        echoed = json.dumps(
            {"error": {"authorization": (headers or {}).get("authorization"), "headers": headers}}
        ).encode()
        return _response(400, "Bad Request", echoed, json_type)
    if behaviour == "400":
        return _response(400, "Bad Request", b'{"error": {"message": "unknown model"}}', json_type)
    if behaviour in ("500", "503"):
        return _response(int(behaviour), "Server Error", b'{"error": {"message": "boom"}}', json_type)
    if behaviour == "garbage":
        return _response(200, "OK", b"<html>502 Bad Gateway</html>", [("Content-Type", "text/html")])
    if behaviour == "empty":
        body = completion_body(model, "")
        body["choices"] = []
        return _response(200, "OK", json.dumps(body).encode(), json_type)
    if behaviour == "content_filter":
        body = completion_body(model, "", finish_reason="content_filter")
        return _response(200, "OK", json.dumps(body).encode(), json_type)
    content = answer_for(prompt, state.refuse_fraction, state.style)
    body = completion_body(model, content, n_prompt=len(prompt.split()))
    return _response(200, "OK", json.dumps(body).encode(), json_type)


class MockServer:
    """The server on its own event loop in a daemon thread; `url` is the /v1 base URL."""

    def __init__(self, state: ServerState | None = None, host: str = "127.0.0.1", port: int = 0):
        self.state = state or ServerState()
        self.host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(
                lambda r, w: _handle(self.state, r, w), self.host, self._port, backlog=1024
            )
            self._port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> "MockServer":
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks(self._loop):
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}/v1"

    def script(self, *behaviours: str) -> None:
        unknown = [b for b in behaviours if b not in BEHAVIOURS]
        if unknown:
            raise ValueError(f"unknown behaviours {unknown}")
        self.state.script.extend(behaviours)


def main() -> None:
    parser = argparse.ArgumentParser(description="Local OpenAI-compatible mock server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=0.05)
    parser.add_argument("--hang", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refuse-fraction", type=float, default=0.0)
    parser.add_argument("--style", choices=ANSWER_STYLES, default="mirror", help="How answers read.")
    parser.add_argument("--serial", action="store_true", help="Answer one request at a time.")
    parser.add_argument("--model", action="append", default=None, help="Serve only these names.")
    args = parser.parse_args()
    state = ServerState(
        latency_s=args.latency,
        retry_after_s=args.retry_after,
        hang_s=args.hang,
        fault_rate=args.fault_rate,
        seed=args.seed,
        record_requests=False,
        refuse_fraction=args.refuse_fraction,
        style=args.style,
        serial=args.serial,
        models=tuple(args.model) if args.model else None,
    )

    async def serve() -> None:
        server = await asyncio.start_server(
            lambda r, w: _handle(state, r, w), args.host, args.port, backlog=4096
        )
        port = server.sockets[0].getsockname()[1]
        print(f"listening on http://{args.host}:{port}/v1", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
