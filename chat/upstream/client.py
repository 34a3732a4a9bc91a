"""The site's httpx client for upstream APIs, and the cheap way to use it.

Starting an answer makes two or three small upstream requests, and a hundred
answers that start together make them all in one burst on one event loop, so
what httpx does around each request decides how soon the model is asked
(docs/performance.md). The site's pools are `UpstreamClient`s: no cookies,
no auth, no event hooks, no redirects. For them

- `request_build` makes the request directly, as `build_request` would (the
  same URL, headers and body), without re-parsing a fixed URL or re-checking
  the headers each time: ~85 µs a request becomes ~5;
- `UpstreamClient.send` hands the request straight to its transport, without
  httpx's auth, redirect and hook layers, which have nothing to do here;
- `response_chunks` reads a body that is not compressed without httpx's
  decoding layer, which would only pass each chunk through, and, on the
  aiohttp transport, straight from aiohttp's reader: a streamed answer's
  every event would otherwise climb three async iterators (aiohttp's,
  httpx-aiohttp's and httpx's) to reach the GPTalk parser. Its read timeout
  is one timer per body that moves only when it fires (`_ReadDeadline`),
  where aiohttp cancels and makes a timer for every chunk that arrives.

A client built some other way (a caller's own) goes the usual httpx way.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from aiohttp.client_proto import ResponseHandler
from httpx._client import USE_CLIENT_DEFAULT, UseClientDefault
from httpx._exceptions import request_context
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions


class _NoCookies(httpx.Cookies):
    """A cookie jar that stays empty (see UpstreamClient)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        raise TypeError("The upstream clients keep no cookies.")


_NO_COOKIES = _NoCookies()


class UpstreamClient(httpx.AsyncClient):
    """An httpx client that keeps no cookies and sends straight to its transport.

    The upstream APIs authenticate with tokens and keys, never with cookies,
    and one pool serves every user of the site: a cookie kept from one user's
    request must not ride along on another's. Skipping httpx's cookie
    bookkeeping (a urllib request built for every response) also saves about
    a sixth of what starting an answer costs the process (docs/performance.md).
    Cookies passed to a request itself are still sent.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise TypeError("The upstream clients keep no cookies.")

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = USE_CLIENT_DEFAULT,
        follow_redirects: bool | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """httpx's `send`, minus the layers that have nothing to do: with no
        auth, no hooks, no redirects to follow and a timeout on the request,
        httpx would only pass the request to the transport and the response
        back (its `elapsed` is not measured)."""
        if (
            self.is_closed
            or auth is not USE_CLIENT_DEFAULT
            or self.auth is not None
            or (self.follow_redirects if follow_redirects is USE_CLIENT_DEFAULT else follow_redirects)
            or any(self.event_hooks.values())
            or "timeout" not in request.extensions
        ):
            return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        transport = self._transport_for_url(request.url)
        try:
            response = await transport.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request  # as httpx does: the error names its request
            raise
        response.request = request
        if response.has_redirect_location:
            response.next_request = self._build_redirect_request(request, response)
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response


class CookielessAiohttpTransport(AiohttpTransport):
    """httpx-aiohttp's transport on an aiohttp session with no cookie jar
    (aiohttp keeps cookies of its own, under httpx's: see UpstreamClient)."""

    def get_client(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
            limit=self.limits.max_connections or 0,
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


_BODY_METHODS = ("POST", "PUT", "PATCH")


@functools.lru_cache(maxsize=256)
def _url(url: str) -> tuple[httpx.URL, bytes]:
    """A fixed URL (a base URL and a path), parsed once; with its Host header."""
    parsed = httpx.URL(url)
    return parsed, parsed.netloc


def request_build(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: httpx.Headers,
    timeout: httpx.Timeout,
    content: bytes | None = None,
    fixed_url: bool = True,
) -> httpx.Request:
    """The request `client.build_request` would make; for an UpstreamClient,
    made directly. `fixed_url`: the URL comes back on other calls (an API
    path, not one with a one-use token in it), so its parsed form is kept."""
    own = set(headers.keys())
    if (
        type(client) is not UpstreamClient
        or client.params
        or str(client.base_url)
        or not own.isdisjoint(("content-length", "transfer-encoding"))
    ):
        return client.build_request(method, url, content=content, headers=headers, timeout=timeout)
    method = method.upper()
    parsed, host = _url(url) if fixed_url else _url.__wrapped__(url)
    # httpx's merge: the client's default headers that the call does not set,
    # then the call's; then what httpx adds, where it adds it: Host first,
    # Content-Length of a body last, an empty body's "0" after Host.
    raw = [item for item in client.headers.raw if item[0].lower().decode("latin-1") not in own]
    raw += headers.raw
    auto = [] if "host" in own else [(b"Host", host)]
    if content:
        raw.append((b"Content-Length", str(len(content)).encode("ascii")))
    elif method in _BODY_METHODS:
        auto.append((b"Content-Length", b"0"))
    raw = auto + raw
    request = httpx.Request(
        method,
        parsed,
        headers=raw,
        stream=httpx.ByteStream(content or b""),
        extensions={"timeout": timeout.as_dict()},
    )
    request.read()  # the body is in hand: `request.content`, as httpx sets it
    return request


def response_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they come; an uncompressed body skips httpx's
    decoder (which would hand every chunk on as it is). A body already read
    (a test's MockTransport) is httpx's to hand out again."""
    if not response.is_stream_consumed and response.headers.get("content-encoding", "identity") == "identity":
        if type(response.stream) is AiohttpResponseStream and not response.is_closed:
            return _aiohttp_body(response, response.stream)
        return response.aiter_raw()
    return response.aiter_bytes()


async def _aiohttp_body(response: httpx.Response, stream: AiohttpResponseStream) -> AsyncIterator[bytes]:
    """What `aiter_raw` gives over httpx-aiohttp's stream (the same chunks, the
    same httpx errors naming the request, the response closed at the end),
    read from aiohttp's reader directly."""
    response.is_stream_consumed = True
    aio = stream._aiohttp_response
    content = aio.content
    deadline = _ReadDeadline.take_over(aio, response.request.extensions.get("timeout", {}).get("read"))
    try:
        with request_context(request=response.request), map_aiohttp_exceptions():
            if deadline is None:
                while chunk := await content.readany():
                    yield chunk
            else:
                while chunk := await content.readany():
                    deadline.read(len(chunk))
                    yield chunk
    finally:
        if deadline is not None:
            deadline.cancel()
    await response.aclose()


class _ReadDeadline:
    """A streamed body's read timeout: fails the body, as aiohttp's own timer
    would, when `timeout` seconds pass with no byte from the server.

    aiohttp re-arms its timer on every chunk that arrives (a cancel and a new
    timer, 100 streams × 50 events a second). This one is armed once and, when
    it fires, moves to the last read plus the timeout if the body moved since;
    bytes that came but were not read yet count as arriving when it fires, so
    it never fails a body whose server is still sending."""

    __slots__ = ("content", "handle", "last", "loop", "protocol", "read_bytes", "timeout")

    @classmethod
    def take_over(cls, aio: aiohttp.ClientResponse, timeout: float | None) -> _ReadDeadline | None:
        connection = aio.connection
        if not timeout or connection is None or connection.protocol is None:
            return None  # no timeout, or the body is already all in
        return cls(aio.content, connection.protocol, timeout)

    def __init__(self, content: aiohttp.StreamReader, protocol: ResponseHandler, timeout: float) -> None:
        self.content, self.protocol, self.timeout = content, protocol, timeout
        protocol.read_timeout = None  # aiohttp's timer stops with the next chunk
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.read_bytes = 0  # of the body, as content.total_bytes counts
        self.handle = self.loop.call_at(self.last + timeout, self._due)

    def read(self, size: int) -> None:
        self.last = self.loop.time()
        self.read_bytes += size

    def cancel(self) -> None:
        self.handle.cancel()

    def _due(self) -> None:
        now = self.loop.time()
        if self.content.total_bytes > self.read_bytes:  # arrived, not read yet
            self.last = max(self.last, now)
        if now < self.last + self.timeout:
            self.handle = self.loop.call_at(self.last + self.timeout, self._due)
            return
        error = aiohttp.SocketTimeoutError("Timeout on reading data from socket")  # aiohttp's words
        self.protocol.set_exception(error)
        self.content.set_exception(error)
