"""`LoopbackHub`: start and stop the server, wire clients to it, and inspect what it stores."""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from safevid.testing.hub import client
from safevid.testing.hub.api import HubApi
from safevid.testing.hub.client import DUMMY_TOKEN
from safevid.testing.hub.handler import Handler, Server
from safevid.testing.hub.store import FileEntry, HubStore

logger = logging.getLogger(__name__)


class ClientProcessError(subprocess.CalledProcessError):
    """A `LoopbackHub.run_python` child that failed; the message shows its output, the traceback included."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


class LoopbackHub:
    """A Hugging Face Hub on 127.0.0.1 that the real client libraries can push to and pull from.

    Args:
        root (`str` or `os.PathLike`, *optional*):
            Storage folder. Defaults to a new temporary folder, removed by `stop()`.
        host (`str`, *optional*, defaults to `"127.0.0.1"`):
            Interface to listen on.
        port (`int`, *optional*, defaults to `0`):
            Port to listen on; `0` picks a free one.
        user (`str`, *optional*, defaults to `"loopback-user"`):
            Name `whoami` reports for any token; namespace of repos created without an organization.
        tree_page_size (`int`, *optional*, defaults to `1000`):
            Entries per page of a tree listing (the Hub uses 1000, 50 with `expand`); lower it to exercise
            the client's pagination.
        request_timeout_s (`float`, *optional*, defaults to `60`):
            Seconds a socket read or write may stall before the connection is closed, so a slow or silent
            client cannot hold a server thread forever.
        max_body_bytes (`int`, *optional*, defaults to `5_000_000_000`):
            Largest request body accepted (the Hub's limit for a single-part LFS upload); a larger one is
            answered 413 without being read.

    Example:

    ```python
    >>> with LoopbackHub() as hub:
    ...     sorted(hub.client_env())  # what a client process needs in its environment
    ...     hub.run_python("from huggingface_hub import whoami; print(whoami()['name'])").stdout.strip()
    ['HF_ENDPOINT', 'HF_HUB_DISABLE_XET', 'HF_HUB_OFFLINE', 'HF_TOKEN']
    'loopback-user'

    ```
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = "loopback-user",
        tree_page_size: int = 1000,
        request_timeout_s: float = 60.0,
        max_body_bytes: int = 5_000_000_000,
    ):
        self._tmp_root = None if root is not None else tempfile.TemporaryDirectory(prefix="loopback-hub-")
        self.root = Path(root if root is not None else self._tmp_root.name)  # type: ignore[union-attr]
        self.store = HubStore(self.root)
        self.host = host
        self.user = user
        self.tree_page_size = tree_page_size
        self.request_timeout_s = request_timeout_s
        self.max_body_bytes = max_body_bytes
        self.unhandled_requests: list[str] = []
        """`"METHOD /path"` of every request no route matched, in order."""
        self.request_log: collections.deque[str] = collections.deque(maxlen=10_000)
        """`"METHOD /path?query STATUS"` of the latest requests (headers, hence tokens, are never kept)."""
        self.api = HubApi(self)
        """The endpoints the HTTP handler hands requests to."""
        self._port = port
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._repo_counter = itertools.count()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> LoopbackHub:
        """Bind the port and serve in a background thread; returns `self`."""
        if self._server is not None:
            return self
        limits = {"timeout": self.request_timeout_s, "max_body_bytes": self.max_body_bytes}
        handler = type("_BoundHandler", (Handler,), {"hub": self, **limits})
        self._server = Server((self.host, self._port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        logger.info("Loopback Hub serving %s from %s", self.endpoint, self.root)
        return self

    def stop(self) -> None:
        """Stop serving and, if the storage folder was a temporary one, delete it."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tmp_root is not None:
            self._tmp_root.cleanup()
            self._tmp_root = None

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the CLI's foreground mode)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("LoopbackHub is not started: call start() or use it as a context manager")
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        """Base URL to use as `HF_ENDPOINT`, e.g. `http://127.0.0.1:40123`."""
        return f"http://{self.host}:{self.port}"

    # -- client side helpers -----------------------------------------------------------------------------

    def client_env(self, token: str = DUMMY_TOKEN) -> dict[str, str]:
        """Environment variables a client process needs to talk to this Hub (see `client_env`)."""
        return client.client_env(self.endpoint, token=token)

    @contextlib.contextmanager
    def online(self, token: str = DUMMY_TOKEN) -> Iterator[LoopbackHub]:
        """Let this process's Hub clients reach this server for the duration of the block.

        `huggingface_hub`, `datasets` and `evaluate` read `HF_ENDPOINT` once, at import; so the endpoint must
        be in the environment before they are first imported (the test suite's conftest does that). This
        context manager then sets the client environment and flips the offline switches those libraries
        have already read (`huggingface_hub.constants.HF_HUB_OFFLINE`, `datasets.config.HF_HUB_OFFLINE`,
        `evaluate.config.HF_EVALUATE_OFFLINE`, ...), and restores everything on exit.

        Raises:
            `RuntimeError`: if a library was imported with another endpoint (use `run_python` then).
        """
        with client.online(self.endpoint, token):
            yield self

    def run_python(
        self,
        code: str,
        *,
        args: list[str] | tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 300,
        check: bool = True,
        token: str = DUMMY_TOKEN,
    ) -> subprocess.CompletedProcess[str]:
        """Run Python code (source text, or the path of a `.py` file) in a fresh interpreter wired to this Hub.

        The child gets the current environment plus `client_env()` plus `env`, so the Hub libraries read the
        loopback endpoint and online mode at import, exactly as a user's script would.

        Raises:
            `ClientProcessError`: if `check` and the code exits with a non-zero status; its message carries the
                child's stdout and stderr.
        """
        child_env = {**os.environ, **self.client_env(token), **(env or {})}
        is_script = code.endswith(".py") and "\n" not in code and Path(code).is_file()
        command = [sys.executable, code, *args] if is_script else [sys.executable, "-c", code, *args]
        result = subprocess.run(
            command, env=child_env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise ClientProcessError(
                result.returncode, command[:2], output=result.stdout, stderr=result.stderr
            )
        return result

    def unique_repo_id(self, name: str, namespace: str = "safevid-tests") -> str:
        """A repo id not used before on this server (tests share one session-wide server)."""
        return f"{namespace}/{name}-{next(self._repo_counter)}-{uuid.uuid4().hex[:6]}"

    # -- server side inspection --------------------------------------------------------------------------

    def head(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> str:
        """Commit sha that `revision` of the repo points to."""
        return self.store.resolve_revision(repo_type, repo_id, revision)

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, FileEntry]:
        """The files of a revision, by path."""
        return self.store.manifest(repo_type, repo_id, self.head(repo_id, repo_type, revision))

    def read_file(self, repo_id: str, path: str, repo_type: str = "model", revision: str = "main") -> bytes:
        """Content of one file at a revision."""
        entry = self.files(repo_id, repo_type, revision)[path]
        return self.store.blob_path(entry.sha256).read_bytes()
