"""Download a video URL as untrusted input: one wall-clock deadline, http(s) only, public addresses only.

A dataset's URL cell is chosen by whoever wrote the dataset, so `download` holds to three rules:

- **The deadline holds.** Every socket operation waits at most for what is left of ``deadline_s`` and the body
  is read one network read at a time, so a server trickling a byte a second is cut off at the deadline, not
  after the next megabyte.
- **Only http(s).** A redirect to any other scheme (``ftp://``, ``file://``) is refused.
- **Public addresses only.** A host that resolves to a loopback, private, link-local or otherwise non-global
  address is refused — the first URL and every redirect — so a cell cannot make the build fetch a service on
  the machine or its network and embed the answer in a dataset that is then pushed. The address checked is
  the address connected to (no second DNS look-up to rebind). Allow such addresses with
  ``allow_private=True`` or ``SAFEVID_ALLOW_PRIVATE_URLS=1`` (a mirror on your own network, a test server).

Downloads connect directly: proxies from the environment are not used, since the address checked must be the
one read from.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, BinaryIO

ALLOW_PRIVATE_ENV = "SAFEVID_ALLOW_PRIVATE_URLS"
_READ_SIZE = 1 << 16


class DownloadError(OSError):
    """A download refused or failed; the message names the limit or rule and how to lift it."""


class DownloadRefused(DownloadError):
    """A URL (or a redirect) the rules refuse to fetch: not http(s), or a loopback or private address."""


def private_urls_allowed() -> bool:
    """Whether ``$SAFEVID_ALLOW_PRIVATE_URLS`` allows loopback and private addresses."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")


def download(
    url: str, out: BinaryIO, *, max_bytes: int, deadline_s: float, allow_private: bool | None = None
) -> str:
    """Stream ``url`` into ``out`` within a size and a time limit; return the SHA-256 of the bytes.

    Args:
        url: An ``http(s)`` URL.
        out: Where the bytes go.
        max_bytes: A response announcing or sending more is refused.
        deadline_s: Wall-clock seconds for the whole download, redirects included.
        allow_private: Allow loopback and private addresses; default: `private_urls_allowed`.

    Raises:
        `DownloadError` (an `OSError`): the download failed, was refused, or went past a limit.
    """
    guard = _Guard(
        time.monotonic() + deadline_s, private_urls_allowed() if allow_private is None else allow_private
    )
    digest, size = hashlib.sha256(), 0
    try:
        if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
            raise DownloadRefused(f"only http(s) URLs are downloaded, not {url[:100]}")
        with guard.opener().open(url, timeout=guard.remaining()) as response:
            announced = int(response.headers.get("Content-Length") or 0)
            if announced > max_bytes:
                raise DownloadError(f"{announced} bytes announced, over the {max_bytes}-byte download limit")
            while True:
                guard.tighten()
                chunk = response.read1(_READ_SIZE)  # one network read: the deadline is checked between them
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadError(f"over the {max_bytes}-byte download limit")
                digest.update(chunk)
                out.write(chunk)
    except DownloadError:
        raise
    except TimeoutError:
        raise DownloadError(f"not downloaded within the {deadline_s:g} s download limit") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, DownloadError):
            raise e.reason from None
        if isinstance(e.reason, TimeoutError):
            raise DownloadError(f"not downloaded within the {deadline_s:g} s download limit") from None
        raise DownloadError(str(e)) from None
    except (OSError, http.client.HTTPException, ValueError) as e:  # resets, truncated bodies, malformed URLs
        raise DownloadError(f"{type(e).__name__}: {e}") from None
    return digest.hexdigest()


class _Guard:
    """One download's deadline and address rule, applied by every connection its opener makes."""

    def __init__(self, deadline: float, allow_private: bool) -> None:
        self.deadline, self.allow_private = deadline, allow_private
        self.socket: socket.socket | None = None  # the latest connection's: the one the body is read from

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def tighten(self) -> None:
        """Let the socket being read wait at most until the deadline."""
        left = self.remaining()
        if self.socket is not None:
            self.socket.settimeout(left)

    def connect(self, host: str, port: int) -> socket.socket:
        """A socket to ``host``, connected to an address the rule allows."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not self.allow_private:
            for *_, address in infos:
                ip = ipaddress.ip_address(address[0].split("%")[0])
                if not _is_public(ip):
                    raise DownloadRefused(
                        f"{host} resolves to {ip}, a loopback or private address: not downloaded (a URL cell "
                        f"may not reach services on this machine or its network); allow it with "
                        f"{ALLOW_PRIVATE_ENV}=1 if you trust the dataset"
                    )
        error: OSError = OSError(f"no address for {host}")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.remaining())
                sock.connect(address)
                return sock
            except OSError as e:
                sock.close()
                error = e
        raise error

    def opener(self) -> urllib.request.OpenerDirector:
        guard = self

        class Connection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = guard.socket = guard.connect(self.host, self.port)

        class TLSConnection(http.client.HTTPSConnection):
            def connect(self) -> None:
                plain = guard.connect(self.host, self.port)
                context = self._context  # type: ignore[attr-defined]
                self.sock = guard.socket = context.wrap_socket(plain, server_hostname=self.host)

        class Handler(urllib.request.HTTPHandler):
            def http_open(self, req: Any) -> Any:
                return self.do_open(Connection, req)

        class TLSHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: Any) -> Any:
                return self.do_open(TLSConnection, req, context=ssl.create_default_context())

        opener = urllib.request.OpenerDirector()  # no proxy, file, ftp or data handler: http(s) only
        for handler in (
            Handler(),
            TLSHandler(),
            _HttpRedirects(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
            urllib.request.UnknownHandler(),
        ):
            opener.add_handler(handler)
        return opener


class _HttpRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects followed only to http(s) (urllib also follows ``ftp://``)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise DownloadRefused(f"redirected to {newurl[:100]}: only http(s) redirects are followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast
