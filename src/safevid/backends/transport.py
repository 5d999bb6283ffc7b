"""HTTP client transports of the OpenAI-compatible backend, behind one small interface.

``await transport.post(body) -> HTTPResponse`` to one URL, on at most ``max_connections``
keep-alive connections; ``await transport.get(url)`` for what a server says about itself
(``/v1/models``...); ``await transport.aclose()`` when the batch is done.

- `AiohttpTransport` (default, ``http_client="aiohttp"``): an `aiohttp.ClientSession` on a
  `aiohttp.TCPConnector` limited to ``max_connections``; aiohttp parses HTTP in C (llhttp) and
  hands a freed connection to the next waiter without scanning its pool.
- `HttpxTransport` (``http_client="httpx"``): an `httpx.AsyncClient`, the client the `openai`
  package sits on. Choose it to go through a proxy set in the environment (``HTTPS_PROXY``...):
  it honours those, the aiohttp transport talks straight to the server it was pointed at.

Why aiohttp is the default, measured by ``benchmarks/backend_throughput.py``: see docs/benchmarks.md
(httpx's connection pool re-scans every connection on each request assignment).

Neither has its own timeout: the caller puts a deadline around `post`, and a cancelled request
closes its connection. Connection-level failures (refused, reset, closed mid-body, a response that
is not HTTP) raise `TransportError`, which the backend's retry policy handles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class TransportError(Exception):
    """The request did not get a complete HTTP response (refused, reset, closed mid-body...)."""


@dataclass
class HTTPResponse:
    """One HTTP response, whatever the client: status, headers and the whole body."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive look-ups (the client's own header mapping)
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class AiohttpTransport:
    """Keep-alive connections through `aiohttp` (see the module docstring).

    Args:
        url: The endpoint every `post` goes to.
        headers: Headers sent with every request.
        max_connections: Connections open at most; callers bound their concurrency to this.
    """

    def __init__(self, url: str, headers: dict[str, str], max_connections: int) -> None:
        import aiohttp

        self._url = url
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),  # an API client keeps no cookies between requests
        )

    async def post(self, body: bytes) -> HTTPResponse:
        import aiohttp

        try:
            async with self._session.post(self._url, data=body) as response:
                return HTTPResponse(response.status, response.headers, await response.read())
        except aiohttp.ClientError as e:
            raise TransportError(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None

    async def get(self, url: str) -> HTTPResponse:
        import aiohttp

        try:
            async with self._session.get(url) as response:
                return HTTPResponse(response.status, response.headers, await response.read())
        except aiohttp.ClientError as e:
            raise TransportError(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None

    async def aclose(self) -> None:
        await self._session.close()


class HttpxTransport:
    """The same interface over `httpx.AsyncClient` (see the module docstring)."""

    def __init__(self, url: str, headers: dict[str, str], max_connections: int) -> None:
        import httpx

        self._url = url
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client: Any = httpx.AsyncClient(headers=headers, limits=limits, timeout=None)

    async def post(self, body: bytes) -> HTTPResponse:
        import httpx

        try:
            response = await self._client.post(self._url, content=body)
        except httpx.HTTPError as e:
            raise TransportError(f"{type(e).__name__}: {e}") from None
        return HTTPResponse(response.status_code, response.headers, response.content)

    async def get(self, url: str) -> HTTPResponse:
        import httpx

        try:
            response = await self._client.get(url)
        except httpx.HTTPError as e:
            raise TransportError(f"{type(e).__name__}: {e}") from None
        return HTTPResponse(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


TRANSPORTS = {"aiohttp": AiohttpTransport, "httpx": HttpxTransport}
