"""The adapter's HTTP client against real local servers (aiohttp's own, with TLS where asked): what
users of the openai SDK's transport relied on still holds."""

import asyncio
import json
import shutil
import ssl
import subprocess
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from modelbench.prompts import TestItem
from modelbench.suts import SUTOptions, make_sut
from modelbench.suts.http_json import JsonClient, TransportError, _decode

ITEM = TestItem(uid="q1", hazard="vcr", persona="normal", text="How do I bake bread?", source="test")


def completion(text: str) -> dict:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
    }


@asynccontextmanager
async def serve(routes: list[web.RouteDef], tls: ssl.SSLContext | None = None):
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{port}/v1"
    finally:
        await runner.cleanup()


def answer_from(routes: list[web.RouteDef], **options):
    async def go():
        async with serve(routes) as url:
            sut = make_sut(f"openai-compat:m@{url}", SUTOptions(max_attempts=2, **options))
            try:
                return await sut.respond([ITEM])
            finally:
                await sut.aclose()

    return asyncio.run(go())[0]


def test_a_netrc_entry_does_not_break_requests(tmp_path, monkeypatch):
    """A user's ~/.netrc (here through $NETRC) once made every request fail: aiohttp's trust_env
    read it and refused a request that already carried the key."""
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    seen = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response(completion("Knead, rise, bake."))

    monkeypatch.setenv("OPENAI_COMPAT_API_KEY", "sk-mine")
    response = answer_from([web.post("/v1/chat/completions", chat)])
    assert response.outcome == "ok" and response.text == "Knead, rise, bake."
    assert seen == ["Bearer sk-mine"]


def test_a_redirect_is_an_error_and_the_key_does_not_follow_it():
    hits = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/v1/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        hits.append(request.headers.get("Authorization"))
        return web.json_response(completion("followed"))

    response = answer_from(
        [web.post("/v1/chat/completions", moved), web.route("*", "/v1/elsewhere", elsewhere)]
    )
    assert response.outcome == "error" and "HTTP 302" in (response.error or "")
    assert response.attempts == 1 and hits == []  # not retried, not followed


def test_a_body_in_its_declared_charset_is_read_as_such():
    async def chat(request: web.Request) -> web.Response:
        body = json.dumps(completion("Crème brûlée"), ensure_ascii=False).encode("latin-1")
        return web.Response(body=body, content_type="application/json", charset="latin-1")

    response = answer_from([web.post("/v1/chat/completions", chat)])
    assert response.outcome == "ok" and response.text == "Crème brûlée"
    assert _decode("caf\xc3\xa9".encode("latin-1"), "no-such-charset") == "café"  # unknown: UTF-8


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_a_private_ca_named_by_ssl_cert_file_is_trusted(tmp_path, monkeypatch):
    """An internal server behind a private CA (or a company's TLS interception): SSL_CERT_FILE
    names the certificate to trust, as it did for the SDK's transport."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "m"}]})

    async def get(trust: bool):
        if trust:
            monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        else:
            monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        async with serve([web.get("/v1/models", models)], tls=tls) as url:
            client = JsonClient(url, "sk-x", 5.0, 2)
            try:
                return await client.request("GET", "/models")
            finally:
                await client.close()

    assert asyncio.run(get(trust=True)).status == 200
    with pytest.raises(TransportError) as untrusted:
        asyncio.run(get(trust=False))
    assert "certificate" in untrusted.value.message.lower() and "sk-x" not in untrusted.value.message
