"""The HTTP/1.1 side of the loopback Hub: read requests off the socket, hand them to `HubApi`, write answers."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from safevid.backends.request_checks import host_allowed
from safevid.testing.hub.errors import HubError
from safevid.testing.hub.protocol import Response

if TYPE_CHECKING:
    from safevid.testing.hub.server import LoopbackHub

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


class Server(ThreadingHTTPServer):
    """A threading HTTP server that takes clients hanging up in its stride."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-download on purpose (a ranged read that got enough): not worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            logger.debug("LoopbackHub: client %s hung up or stalled", client_address)
        else:
            logger.exception("LoopbackHub: error while handling a request from %s", client_address)


class Handler(BaseHTTPRequestHandler):
    """Parses requests, dispatches them to the hub's `HubApi` and writes the answers.

    Subclassed per server with the `hub`, `timeout` (seconds a socket read or write may stall, so a slow
    client cannot hold a thread forever) and `max_body_bytes` attributes set. A request whose ``Host`` names
    neither the bound address nor (on loopback) ``localhost`` is refused unread, as `safevid serve` refuses it.
    """

    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect
    server_version = "LoopbackHub/1.0"
    hub: LoopbackHub
    timeout: float
    max_body_bytes: int

    def _dispatch(self) -> None:
        method = self.command
        if not host_allowed(self.headers.get("Host"), self.hub.host):  # DNS rebinding: a page on another name
            self.close_connection = True
            message = (
                f"Host {self.headers.get('Host')!r:.80} does not name the loopback Hub ({self.hub.host})"
            )
            self._send(method, Response(status=400, payload={"error": message}))
            return
        split = urlsplit(self.path)
        chunks = self._body_chunks()
        response = self.hub.api.handle(method, split.path, split.query, self.headers, chunks)
        self._finish_body(chunks)
        self.hub.request_log.append(f"{method} {self.path} {response.status}")
        self._send(method, response)

    # `BaseHTTPRequestHandler` calls `do_<METHOD>`; the API routes every method it knows the same way.
    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry no secret (the token is a header), but keep them at debug level: tests are
        # chatty enough.
        logger.debug("%s %s", self.address_string(), format % args)

    # -- request body ------------------------------------------------------------------------------------

    def _body_chunks(self) -> Iterator[bytes]:
        """The body, refused with a 413 (and the connection closed) past `max_body_bytes`."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            total = 0
            while True:
                size = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                total += size
                self._check_body_size(total)
                yield from self._read(size, "mid-chunk")
                self.rfile.readline(64)  # CRLF after the chunk
        else:
            length = int(self.headers.get("Content-Length") or 0)
            self._check_body_size(length)
            yield from self._read(length, "mid-body")

    def _check_body_size(self, size: int) -> None:
        if size > self.max_body_bytes:
            self.close_connection = True  # the rest of the body is never read: the connection is out of sync
            raise HubError(413, f"Request body over the loopback Hub's limit of {self.max_body_bytes} bytes")

    def _read(self, remaining: int, where: str) -> Iterator[bytes]:
        while remaining:
            chunk = self.rfile.read(min(remaining, _CHUNK))
            if not chunk:
                raise ConnectionError(f"client closed the connection {where}")
            remaining -= len(chunk)
            yield chunk

    def _finish_body(self, chunks: Iterator[bytes]) -> None:
        """Read what the handler left of the body, so the kept-alive connection stays in sync."""
        try:
            for _ in chunks:
                pass
        except (ConnectionError, ValueError, HubError):
            self.close_connection = True

    # -- response ----------------------------------------------------------------------------------------

    def _send(self, method: str, response: Response) -> None:
        body: bytes = b""
        length: int
        if response.file is not None:
            start, end = response.file_range or (0, response.file.stat().st_size - 1)
            length = end - start + 1
        else:
            body = json.dumps(response.payload).encode() if response.payload is not None else b""
            length = len(body)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(length))
        for name, value in (response.headers or {}).items():
            # Header values must be one line of latin-1; error messages can name any path.
            self.send_header(name, " ".join(value.encode("ascii", "backslashreplace").decode().splitlines()))
        self.end_headers()
        if method == "HEAD":
            return
        if response.file is None:
            self.wfile.write(body)
            return
        with open(response.file, "rb") as src:
            src.seek(start)
            remaining = length
            while remaining > 0:
                chunk = src.read(min(remaining, _CHUNK))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)
