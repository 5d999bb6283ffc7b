"""Lean HTTP/1.1 client transports for the OpenAI-compatible backend.

Two transports behind one small interface, ``await transport.post(body) -> HTTPResponse``:

- `NativeTransport` (default): keep-alive connections on `asyncio` streams (TLS for ``https``), one
  per request in flight. Measured by ``benchmarks/backend_throughput.py`` on a 2-core box at
  concurrency 64 against a 50 ms server, httpx's connection pool spent most of the CPU scanning its
  connections (its request assignment is quadratic in the pool size) and topped out near 0.6 of the
  ideal rate, where these plain streams reach the server's limit. It speaks only what a chat
  completion needs: ``Content-Length``/chunked/close-delimited bodies, no compression, no proxies.
- `HttpxTransport`: an `httpx.AsyncClient`, for what the native one leaves out (proxies from the
  environment, HTTP/2-terminating gateways). Select it with ``http_client="httpx"``.

Both raise `TransportError` for connection-level failures; timeouts are the caller's (a deadline
around `post`), and a cancelled request closes its connection, whose state is then unknown.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_HEAD_LIMIT = 1 << 20


class TransportError(Exception):
    """The request did not get a complete HTTP response (refused, reset, closed mid-body...)."""


@dataclass
class HTTPResponse:
    status_code: int
    headers: dict[str, str]  # lower-cased names
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()

    async def roundtrip(self, head: bytes, body: bytes) -> tuple[HTTPResponse, bool]:
        """Send one request; return the response and whether the connection may be reused."""
        self.writer.write(head + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise TransportError(f"malformed status line {lines[0][:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        reusable = headers.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
        if "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            content = await self._read_chunked()
        elif status in (204, 304) or 100 <= status < 200:
            content = b""
        else:
            content, reusable = await self.reader.read(), False
        return HTTPResponse(status, headers, content), reusable

    async def _read_chunked(self) -> bytes:
        chunks = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


class NativeTransport:
    """Keep-alive HTTP/1.1 connections to one URL (see the module docstring).

    Args:
        url: The endpoint every `post` goes to.
        headers: Headers sent with every request.
        max_connections: Connections kept at most (callers bound their concurrency to this).
    """

    def __init__(self, url: str, headers: dict[str, str], max_connections: int) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme in {parts.scheme}://...; use http or https")
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.netloc.rsplit("@", 1)[-1]
        fixed = {"Host": host_header, "Accept-Encoding": "identity", "Connection": "keep-alive", **headers}
        self._head_prefix = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._idle: list[_Connection] = []
        self._open = 0
        self._max = max_connections
        self._available = asyncio.Condition()

    async def post(self, body: bytes) -> HTTPResponse:
        head = (self._head_prefix + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        connection, reused = await self._acquire()
        try:
            try:
                response, reusable = await connection.roundtrip(head, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                if not reused:
                    raise
                # A kept-alive connection the server closed while idle: one fresh try, as browsers do.
                connection.close()
                connection = await self._connect()
                response, reusable = await connection.roundtrip(head, body)
        except (
            ConnectionError,
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ) as e:
            connection.close()
            await self._release(None)
            raise TransportError(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
        except BaseException:  # cancelled (timeout) or TransportError: the connection state is unknown
            connection.close()
            await self._release(None)
            raise
        if reusable:
            await self._release(connection)
        else:
            connection.close()
            await self._release(None)
        return response

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._ssl,
                limit=_HEAD_LIMIT,
                server_hostname=self._host if self._ssl else None,
            )
        except OSError as e:
            raise TransportError(f"cannot connect to {self._host}:{self._port} ({e})") from None
        return _Connection(reader, writer)

    async def _acquire(self) -> tuple[_Connection, bool]:
        async with self._available:
            while not self._idle and self._open >= self._max:
                await self._available.wait()
            if self._idle:
                return self._idle.pop(), True
            self._open += 1
        try:
            return await self._connect(), False
        except BaseException:
            await self._release(None)
            raise

    async def _release(self, connection: _Connection | None) -> None:
        async with self._available:
            if connection is None:
                self._open -= 1
            else:
                self._idle.append(connection)
            self._available.notify()

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class HttpxTransport:
    """The same interface over `httpx.AsyncClient` (proxies, gateways the native client cannot talk to)."""

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
        return HTTPResponse(
            response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content
        )

    async def aclose(self) -> None:
        await self._client.aclose()
