"""JSON over HTTP for the OpenAI-compatible adapter: one aiohttp session per SUT and event loop.

Why not the openai SDK's client: we already build each body, read the raw reply, count attempts
and retry ourselves, so the SDK's request machinery (typed options, its own URL and header
models, its retry loop) was pure overhead. Measured in one sitting on 2 cores, 2,000 chat
requests at concurrency 64 against a 100 ms server, whole processes: a bare SDK client took
4.7-5.7 s, a bare aiohttp client 3.6-3.7 s (the ideal is 3.1 s), and importing the SDK alone cost
about half a second of every run (`benchmarks/engine.py` (e) times our whole run against the
SDK). What the SDK's transport did that users rely on is kept here:

- the bearer key, sent as one `Authorization` header (never `~/.netrc`: aiohttp's `trust_env`
  would read it and then refuse the request for carrying two kinds of auth);
- proxies from `HTTP(S)_PROXY` / `NO_PROXY`, looked up once per session;
- certificates: `SSL_CERT_FILE` / `SSL_CERT_DIR` when set (a company's interception CA, an
  internal server's private CA), else the system's store plus certifi's bundle;
- one kept-alive connection per request in flight, idle ones closed after 5 s (servers on uvicorn,
  vLLM and `transformers serve`, close theirs at 5 s: reusing one they are closing costs a retry);
- redirects are not followed (a redirect is the server's answer, and the key must not travel on);
- a timeout per request.

Failures come back as the adapter's own two kinds (see `suts/openai_compat.py`): an HTTP reply of
any status, or a `TransportError` (no reply: refused, unknown host, timed out, dropped). The
error keeps only the failure's kind and message, never the exception, whose request details
would include the key.
"""

import asyncio
import json
import os
import socket
import ssl
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from modelbench.version import __version__

IDLE_CONNECTION_S = 5.0


@dataclass
class HttpReply:
    status: int
    body: str
    retry_after: str | None


class TransportError(Exception):
    """The request got no HTTP reply. `kind` names the failure (ConnectionRefusedError,
    gaierror, ServerDisconnectedError, ...); the flags say what a user can act on."""

    def __init__(
        self,
        kind: str,
        message: str,
        timed_out: bool = False,
        refused: bool = False,
        unknown_host: bool = False,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.timed_out = timed_out
        self.refused = refused
        self.unknown_host = unknown_host

    @classmethod
    def from_exception(cls, exc: BaseException) -> "TransportError":
        if isinstance(exc, TimeoutError):
            return cls(type(exc).__name__, str(exc), timed_out=True)
        return cls(
            type(exc).__name__,
            str(exc),
            refused=isinstance(exc, ConnectionRefusedError),
            unknown_host=isinstance(exc, socket.gaierror),
        )


def ssl_context() -> ssl.SSLContext:
    """The certificates a request trusts (see the module's docstring)."""
    return _context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@lru_cache(maxsize=4)
def _context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """Made once per process and setting: loading a certificate store costs 30-70 ms of CPU."""
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    context = ssl.create_default_context()  # the system's store
    try:
        import certifi

        context.load_verify_locations(cafile=certifi.where())  # for images without a system store
    except (ImportError, OSError):
        pass
    return context


def _decode(raw: bytes, charset: str | None) -> str:
    """The body as text: its declared charset, UTF-8 when it declares none or one we lack."""
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


class JsonClient:
    """POST and GET JSON under `base_url` with a bearer key. The session is made on first use,
    inside the running event loop (a new loop gets a new session), and `close` ends it: the
    adapter closes it at the end of each loop, the preflight's and then the run's."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float, connections: int):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.connections = connections
        self.headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": f"modelbench/{__version__}",
        }
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxy: tuple[Any, Any] = (None, None)
        self._timeout: Any = None  # the default aiohttp.ClientTimeout, made with the session

    def _ensure_session(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._proxy = _env_proxy(self.base_url)
            # Plain HTTP to the server and the proxy never reads a certificate: no store to load.
            tls = any(str(url or "").startswith("https") for url in (self.base_url, self._proxy[0]))
            connector = aiohttp.TCPConnector(
                limit=self.connections,
                limit_per_host=self.connections,
                ssl=ssl_context() if tls else True,
                keepalive_timeout=IDLE_CONNECTION_S,
            )
            self._session = aiohttp.ClientSession(connector=connector, headers=self.headers, trust_env=False)
            self._loop = loop
            self._timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> HttpReply:
        """One attempt: the reply whatever its status, or TransportError when there was none."""
        import aiohttp

        session = self._ensure_session()
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else self._timeout
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers = {"Content-Type": "application/json", **(headers or {})}
        proxy, proxy_auth = self._proxy
        try:
            async with session.request(
                method,
                self.base_url + path,
                data=data,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                proxy=proxy,
                proxy_auth=proxy_auth,
            ) as response:
                raw = await response.read()
                return HttpReply(
                    status=response.status,
                    body=_decode(raw, response.charset),
                    retry_after=response.headers.get("Retry-After"),
                )
        except TimeoutError as exc:  # asyncio's and aiohttp's timeouts are both TimeoutError
            raise TransportError.from_exception(exc) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransportError.from_exception(exc.os_error if exc.os_error is not None else exc) from None
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            # ValueError: aiohttp's own refusals of a request it cannot send (a bad URL, say).
            raise TransportError.from_exception(exc) from None

    async def close(self) -> None:
        if self._session is not None:
            if self._loop is asyncio.get_running_loop():
                await self._session.close()
            self._session = None
            self._loop = None


def _env_proxy(url: str) -> tuple[Any, Any]:
    """(proxy URL, its auth) for `url` from HTTP(S)_PROXY and NO_PROXY, or (None, None)."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None
