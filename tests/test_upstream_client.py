"""chat/upstream/client.py: the site's httpx client against a real HTTP server
on loopback. Its shortcuts must give exactly what plain httpx gives: the same
request on the wire, the same response, the same errors; and where httpx has
work to do (hooks, redirects, auth, compressed bodies) httpx does it.
"""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pytest
from aiohttp import web

from chat.upstream import http as upstream_http
from chat.upstream.client import UpstreamClient, request_build, response_chunks
from chat.upstream.gptalk import aclose_clients

TIMEOUT = httpx.Timeout(5, connect=2)
LINES = [f"data: {json.dumps({'n': n})}\n\n".encode() for n in range(50)]


async def _echo(request: web.Request) -> web.Response:
    """What arrived, header by header, in order."""
    return web.json_response(
        {
            "method": request.method,
            "path_qs": request.path_qs,
            "headers": [[k.decode(), v.decode()] for k, v in request.raw_headers],
            "body": (await request.read()).decode(),
        }
    )


async def _event_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    return response


async def _stream(request: web.Request) -> web.StreamResponse:
    response = await _event_stream(request)
    for line in LINES:
        await response.write(line)
    await response.write_eof()
    return response


async def _stall(request: web.Request) -> web.StreamResponse:
    """Two events, then nothing: the reader's timeout must end it."""
    response = await _event_stream(request)
    await response.write(LINES[0] + LINES[1])
    await asyncio.sleep(3)  # far past the client's read timeout
    return response


async def _slow(request: web.Request) -> web.StreamResponse:
    """Eight events 0.3 s apart: slower than nothing, quicker than the read timeout."""
    response = await _event_stream(request)
    for line in LINES[:8]:
        await response.write(line)
        await asyncio.sleep(0.3)
    await response.write_eof()
    return response


async def _cut(request: web.Request) -> web.StreamResponse:
    """Two events of a chunked body, then the connection drops."""
    response = await _event_stream(request)
    await response.write(LINES[0] + LINES[1])
    await asyncio.sleep(0.05)
    request.transport.close()
    return response


async def _gzipped(request: web.Request) -> web.Response:
    return web.Response(body=gzip.compress(b"".join(LINES)), headers={"content-encoding": "gzip"})


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/echo")


async def _login(request: web.Request) -> web.Response:
    response = web.json_response({"ok": True})
    response.set_cookie("sid", "first-users-session")
    return response


async def _cookie(request: web.Request) -> web.Response:
    return web.json_response({"cookie": request.headers.get("Cookie")})


@pytest.fixture
async def server():
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/gzipped", _gzipped)
    app.router.add_get("/stall", _stall)
    app.router.add_get("/cut", _cut)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/redirect", _redirect)
    app.router.add_post("/login", _login)
    app.router.add_get("/cookie", _cookie)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await aclose_clients()
        await runner.cleanup()


TRANSPORTS = ["aiohttp", "httpx"]


def _pool(transport: str) -> httpx.AsyncClient:
    return upstream_http.client_get(proxy=None, transport=transport)


HEADERS = httpx.Headers({"content-type": "application/json", "accept": "*/*", "x-auth-appid": "2229"})


@pytest.mark.parametrize(
    ("method", "path", "content", "headers"),
    [
        ("POST", "/echo", b'{"content": "hi"}', HEADERS),
        ("POST", "/echo", None, HEADERS),
        ("POST", "/echo", b"", HEADERS),
        ("GET", "/echo?token=a%2Bb", None, HEADERS),
        ("put", "/echo", b"x", httpx.Headers({"Host": "example.test"})),
        ("POST", "/echo", b"xy", httpx.Headers({"Content-Length": "2"})),
    ],
)
async def test_built_requests_are_what_build_request_makes(server, method, path, content, headers):
    client = _pool("aiohttp")
    assert type(client) is UpstreamClient
    ours = request_build(client, method, server + path, headers=headers, timeout=TIMEOUT, content=content)
    again = request_build(client, method, server + path, headers=headers, timeout=TIMEOUT, content=content)
    once = request_build(
        client, method, server + path, headers=headers, timeout=TIMEOUT, content=content, fixed_url=False
    )
    httpx_own = client.build_request(method, server + path, content=content, headers=headers, timeout=TIMEOUT)
    for request in (ours, again, once):
        assert request.method == httpx_own.method
        assert request.url == httpx_own.url
        assert request.headers.raw == httpx_own.headers.raw
        assert request.content == httpx_own.content
        assert request.extensions == httpx_own.extensions
    # And on the wire, through the shortcut send, the server sees the same.
    seen = (await client.send(ours)).json()
    assert seen == (await super(UpstreamClient, client).send(httpx_own)).json()
    assert seen["method"] == method.upper() and seen["body"] == (content or b"").decode()


async def test_another_client_gets_its_own_defaults(server):
    async with httpx.AsyncClient(headers={"x-default": "1"}, params={"p": "q"}) as client:
        request = request_build(client, "GET", server + "/echo", headers=HEADERS, timeout=TIMEOUT)
        assert request.headers["x-default"] == "1" and request.url.params["p"] == "q"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_shortcut_send_answers_as_httpx_does(server, transport):
    client = _pool(transport)
    for stream in (False, True):
        request = request_build(client, "GET", server + "/stream", headers=HEADERS, timeout=TIMEOUT)
        ours = await client.send(request, stream=stream)
        theirs = await super(UpstreamClient, client).send(request, stream=stream)
        try:
            assert (ours.status_code, ours.request) == (theirs.status_code, request)
            assert ours.headers.raw == theirs.headers.raw
            if stream:
                chunks = [chunk async for chunk in response_chunks(ours)]
                assert b"".join(chunks) == b"".join([c async for c in theirs.aiter_bytes()]) == b"".join(LINES)
            else:
                assert ours.content == theirs.content == b"".join(LINES)
        finally:
            await ours.aclose()
            await theirs.aclose()
        assert ours.is_closed


@pytest.mark.parametrize("path", ["/stall", "/cut"])
async def test_a_body_that_stalls_or_breaks_fails_as_httpx_says(server, path):
    """The aiohttp reader's shortcut raises what httpx's own reading raises,
    naming the request, after the same chunks."""
    client = _pool("aiohttp")
    timeout = httpx.Timeout(5, read=0.5)
    outcomes = []
    for send in (client.send, super(UpstreamClient, client).send):
        request = request_build(client, "GET", server + path, headers=HEADERS, timeout=timeout)
        response = await send(request, stream=True)
        chunks = response_chunks(response) if send == client.send else response.aiter_raw()
        got = b""
        with pytest.raises(httpx.TransportError) as caught:
            async for chunk in chunks:
                got += chunk
        await response.aclose()
        assert caught.value.request is request
        outcomes.append((type(caught.value), got))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] == LINES[0] + LINES[1]
    assert outcomes[0][0] is (httpx.ReadTimeout if path == "/stall" else httpx.ReadError)


@pytest.mark.parametrize("pause", [0, 1.5])
async def test_a_body_that_keeps_coming_never_times_out(server, pause):
    """The read timeout counts the server's silence, not the body's length, nor
    the time the reader spent elsewhere while bytes were arriving."""
    client = _pool("aiohttp")
    request = request_build(client, "GET", server + "/slow", headers=HEADERS, timeout=httpx.Timeout(5, read=0.5))
    response = await client.send(request, stream=True)
    got = b""
    async for chunk in response_chunks(response):
        if not got:
            await asyncio.sleep(pause)
        got += chunk
    assert got == b"".join(LINES[:8])
    assert response.is_closed


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_compressed_bodies_are_decoded(server, transport):
    client = _pool(transport)
    request = request_build(client, "GET", server + "/gzipped", headers=HEADERS, timeout=TIMEOUT)
    response = await client.send(request, stream=True)
    try:
        assert b"".join([chunk async for chunk in response_chunks(response)]) == b"".join(LINES)
    finally:
        await response.aclose()
    # A body already read is handed out again (as httpx's MockTransport gives it).
    response = await client.send(request_build(client, "GET", server + "/stream", headers=HEADERS, timeout=TIMEOUT))
    assert b"".join([chunk async for chunk in response_chunks(response)]) == b"".join(LINES)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_connection_error_names_its_request(transport):
    client = _pool(transport)
    request = request_build(client, "GET", "http://127.0.0.1:9/nothing", headers=HEADERS, timeout=TIMEOUT)
    with pytest.raises(upstream_http.TRANSPORT_ERRORS) as caught:
        await client.send(request)
    if isinstance(caught.value, httpx.RequestError):
        assert caught.value.request is request
    await aclose_clients()


async def test_where_httpx_has_work_it_does_it(server):
    """Hooks, redirects to follow and auth go httpx's own way."""
    client = _pool("aiohttp")
    redirect = request_build(client, "GET", server + "/redirect", headers=HEADERS, timeout=TIMEOUT)
    not_followed = await client.send(redirect)
    assert not_followed.status_code == 302
    assert not_followed.next_request.url == (await super(UpstreamClient, client).send(redirect)).next_request.url
    followed = await client.send(redirect, follow_redirects=True)
    assert followed.status_code == 200 and followed.json()["path_qs"] == "/echo"

    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(str(request.url))

    client.event_hooks = {"request": [hook], "response": []}
    echo = request_build(client, "GET", server + "/echo", headers=HEADERS, timeout=TIMEOUT)
    await client.send(echo)
    assert seen == [server + "/echo"]
    client.event_hooks = {"request": [], "response": []}

    authed = await client.send(echo, auth=httpx.BasicAuth("u", "p"))
    headers = {k.lower(): v for k, v in authed.json()["headers"]}
    assert headers["authorization"].startswith("Basic ")


async def test_a_closed_client_refuses_to_send(server):
    client = _pool("aiohttp")
    request = request_build(client, "GET", server + "/echo", headers=HEADERS, timeout=TIMEOUT)
    await aclose_clients()
    with pytest.raises(RuntimeError):
        await client.send(request)


# --- no cookies kept -----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_shared_clients_keep_no_cookies(server, transport):
    """One pool serves every user: a cookie an upstream sets on one request
    never rides along on the next, whichever transport carries it."""
    client = _pool(transport)
    # A host name, not an address: aiohttp's own jar ignores cookies of addresses.
    base = server.replace("127.0.0.1", "localhost")
    first = await client.post(f"{base}/login")
    assert first.headers["set-cookie"].startswith("sid=")
    assert (await client.get(f"{base}/cookie")).json() == {"cookie": None}
    assert len(client.cookies) == 0
    with pytest.raises(TypeError):
        client.cookies.set("sid", "x")
