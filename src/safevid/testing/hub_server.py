"""A loopback Hugging Face Hub: the subset of the Hub HTTP API that the real client libraries use.

`LoopbackHub` serves, on 127.0.0.1, what `huggingface_hub` 2.x (with `HF_HUB_DISABLE_XET=1`), `datasets`,
`transformers` and `evaluate` call to push and pull repositories: repo creation and info, tree listing and
paths-info, file resolution (HEAD, GET and Range), preupload, NDJSON commits (regular files, LFS pointers,
deletions, parent-commit check), the Git LFS basic batch upload, refs, commits, branches, tags and YAML
validation. It lets the project's tests and its offline demo run `Dataset.push_to_hub`, `load_dataset("org/name")`,
`from_pretrained("org/name")` or `evaluate.load("org/space")` end to end without a network.

Storage is a folder on disk, so a server restarted on the same root sees the same repos:

```
<root>/blobs/<sha256[:2]>/<sha256>             file contents, content-addressed (regular and LFS files alike)
<root>/repos/<type>s/<org>/<name>/repo.json   repo metadata and refs (branch -> commit sha)
<root>/repos/<type>s/<org>/<name>/commits/<sha>.json   one commit: parents, message and the full file manifest
```

Requests to routes it does not know are answered with a 404 JSON error, logged as a warning by the
`safevid.testing.hub_server` logger and recorded in `LoopbackHub.unhandled_requests`, so that a gap in the
emulation shows up instead of passing silently. Any `Bearer` token is accepted; tokens are never logged or
stored.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime as dt
import fnmatch
import hashlib
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

logger = logging.getLogger(__name__)

DUMMY_TOKEN = "hf_loopback_dummy_token"
"""The token handed to clients: the loopback Hub accepts any bearer token."""

REPO_TYPES = ("model", "dataset", "space")
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
# Files at least this large go through LFS whatever their name, as on the Hub.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
_CHUNK = 1024 * 1024

# The `.gitattributes` a new repo starts with. Like the Hub's default, it routes binary formats to LFS;
# preupload then answers "lfs" for any path these patterns (or the repo's own edited file) match.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.avi", "*.bin", "*.bz2", "*.ckpt", "*.flac", "*.gz", "*.h5", "*.jpeg", "*.jpg",
        "*.joblib", "*.mkv", "*.model", "*.mov", "*.mp3", "*.mp4", "*.msgpack", "*.npy", "*.npz", "*.onnx",
        "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.png", "*.pt", "*.pth", "*.safetensors", "*.tar",
        "*.tflite", "*.tgz", "*.wasm", "*.wav", "*.webm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)  # fmt: skip


class HubError(Exception):
    """An error answered to the client, with the `X-Error-Code` header that `huggingface_hub` maps to its
    exception classes (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}  # more fields of the JSON error body


class ClientProcessError(subprocess.CalledProcessError):
    """A `LoopbackHub.run_python` child that failed; the message shows its output, the traceback included."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


# ----------------------------------------------------------------------------------------------------------
# Storage
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit's manifest.

    Attributes:
        size (`int`): Size of the content in bytes.
        sha256 (`str`): SHA-256 of the content; the key of the blob store.
        oid (`str`): Git blob id: SHA-1 of the content for a regular file, of the LFS pointer for an LFS file.
        lfs (`bool`): Whether the file is stored through LFS.
    """

    size: int
    sha256: str
    oid: str
    lfs: bool

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


def git_blob_oid(data: bytes) -> str:
    """Git's object id of a blob holding `data`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file that stands in the git tree for an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _check_repo_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


class HubStore:
    """Disk-backed repos, commits and content-addressed blobs; safe to use from several threads."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._commit_counter = itertools.count()

    # -- blobs -------------------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256[:2] / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.blob_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def put_blob(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.has_blob(sha256):
            tmp = self._tmp_path()
            tmp.write_bytes(data)
            self._install_blob(tmp, sha256)
        return sha256

    def put_blob_stream(self, chunks: Iterator[bytes], expected_sha256: str, expected_size: int) -> None:
        """Store a streamed upload if its size and SHA-256 match what the LFS batch announced."""
        digest = hashlib.sha256()
        size = 0
        tmp = self._tmp_path()
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            if size != expected_size or digest.hexdigest() != expected_sha256:
                raise HubError(
                    400,
                    f"LFS upload does not match its batch request: got {size} bytes with sha256 "
                    f"{digest.hexdigest()}, expected {expected_size} bytes with sha256 {expected_sha256}",
                )
            self._install_blob(tmp, expected_sha256)
        finally:
            tmp.unlink(missing_ok=True)

    def _tmp_path(self) -> Path:
        return self.root / "blobs" / f".incoming-{uuid.uuid4().hex}"

    def _install_blob(self, tmp: Path, sha256: str) -> None:
        # Written aside then renamed, so a reader never sees a partial blob.
        target = self.blob_path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)

    # -- repos -------------------------------------------------------------------------------------------

    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def get_repo(self, repo_type: str, repo_id: str) -> dict[str, Any] | None:
        path = self._repo_dir(repo_type, repo_id) / "repo.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool, sdk: str | None) -> bool:
        """Create a repo with an initial commit holding `.gitattributes`; `False` if it already exists."""
        with self._lock:
            if self.get_repo(repo_type, repo_id) is not None:
                return False
            meta = {
                "type": repo_type,
                "id": repo_id,
                "private": private,
                "sdk": sdk,
                "createdAt": _now(),
                "refs": {},
            }
            _write_json_atomic(self._repo_dir(repo_type, repo_id) / "repo.json", meta)
            oid = self.put_blob(DEFAULT_GITATTRIBUTES.encode())
            entry = FileEntry(
                len(DEFAULT_GITATTRIBUTES), oid, git_blob_oid(DEFAULT_GITATTRIBUTES.encode()), False
            )
            self._write_commit(
                repo_type, repo_id, "main", None, {".gitattributes": entry}, "initial commit", ""
            )
            return True

    def delete_repo(self, repo_type: str, repo_id: str) -> bool:
        with self._lock:
            repo_dir = self._repo_dir(repo_type, repo_id)
            if not (repo_dir / "repo.json").is_file():
                return False
            shutil.rmtree(repo_dir)
            return True

    def set_private(self, repo_type: str, repo_id: str, private: bool) -> None:
        with self._lock:
            meta = self._require_repo(repo_type, repo_id)
            meta["private"] = private
            _write_json_atomic(self._repo_dir(repo_type, repo_id) / "repo.json", meta)

    def _require_repo(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        meta = self.get_repo(repo_type, repo_id)
        if meta is None:
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return meta

    # -- commits -----------------------------------------------------------------------------------------

    def resolve_revision(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Commit sha of a branch name, a full sha or an unambiguous sha prefix."""
        meta = self._require_repo(repo_type, repo_id)
        refs: dict[str, str] = meta["refs"]
        if revision in refs:
            return refs[revision]
        if revision.startswith("refs/heads/") and revision[len("refs/heads/") :] in refs:
            return refs[revision[len("refs/heads/") :]]
        tags: dict[str, str] = meta.get("tags", {})
        tag = revision[len("refs/tags/") :] if revision.startswith("refs/tags/") else revision
        if tag in tags:
            return tags[tag]
        if re.fullmatch(r"[0-9a-f]{5,40}", revision):
            commits_dir = self._repo_dir(repo_type, repo_id) / "commits"
            matches = [p.stem for p in commits_dir.glob(f"{revision}*.json")]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def read_commit(self, repo_type: str, repo_id: str, sha: str) -> dict[str, Any]:
        return json.loads((self._repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json").read_text())

    def manifest(self, repo_type: str, repo_id: str, sha: str) -> dict[str, FileEntry]:
        files = self.read_commit(repo_type, repo_id, sha)["files"]
        return {path: FileEntry(**entry) for path, entry in files.items()}

    def history(self, repo_type: str, repo_id: str, sha: str) -> list[dict[str, Any]]:
        """Commits reachable from `sha` along first parents, newest first."""
        commits = []
        current: str | None = sha
        while current is not None:
            commit = self.read_commit(repo_type, repo_id, current)
            commits.append(commit)
            current = commit["parents"][0] if commit["parents"] else None
        return commits

    def commit(
        self,
        repo_type: str,
        repo_id: str,
        branch: str,
        operations: list[tuple[str, dict[str, Any]]],
        *,
        summary: str,
        description: str,
        parent_commit: str | None,
    ) -> str:
        """Apply NDJSON commit operations on top of `branch` and move the branch to the new commit."""
        with self._lock:
            meta = self._require_repo(repo_type, repo_id)
            if branch not in meta["refs"]:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = meta["refs"][branch]
            if parent_commit is not None and parent_commit != head:
                raise HubError(
                    412,
                    f"A commit has happened since {parent_commit} (head of {branch} is now {head}). "
                    "Please refresh and try again.",
                )
            files = dict(self.manifest(repo_type, repo_id, head))
            for key, value in operations:
                files = self._apply(files, key, value)
            return self._write_commit(repo_type, repo_id, branch, head, files, summary, description)

    def _apply(self, files: dict[str, FileEntry], key: str, value: dict[str, Any]) -> dict[str, FileEntry]:
        try:
            return self._apply_checked(files, key, value)
        except (KeyError, TypeError, ValueError) as err:  # base64 errors are ValueErrors
            raise HubError(400, f"Malformed {key!r} commit operation {value.get('path')!r}: {err!r}") from err

    def _apply_checked(
        self, files: dict[str, FileEntry], key: str, value: dict[str, Any]
    ) -> dict[str, FileEntry]:
        path = _check_repo_path(str(value.get("path", "")))
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}")
            data = base64.b64decode(value["content"], validate=True)
            files[path] = FileEntry(len(data), self.put_blob(data), git_blob_oid(data), False)
        elif key == "lfsFile":
            if value.get("algo", "sha256") != "sha256":
                raise HubError(400, f"Unsupported LFS hash algorithm {value.get('algo')!r} for {path}")
            sha256 = str(value["oid"])
            blob = self.blob_path(sha256)
            if not blob.is_file():
                raise HubError(
                    422, f"LFS object {sha256} for {path} was never uploaded (call the LFS batch API first)"
                )
            size = blob.stat().st_size
            if value.get("size") is not None and int(value["size"]) != size:
                raise HubError(422, f"LFS object {sha256} for {path} has {size} bytes, not {value['size']}")
            files[path] = FileEntry(size, sha256, git_blob_oid(lfs_pointer(sha256, size)), True)
        elif key == "deletedFile":
            if path not in files:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            del files[path]
        elif key == "deletedFolder":
            prefix = path.rstrip("/") + "/"
            doomed = [p for p in files if p.startswith(prefix)]
            if not doomed:
                raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
            for p in doomed:
                del files[p]
        else:
            raise HubError(400, f"Unknown commit operation {key!r}")
        return files

    def _write_commit(
        self,
        repo_type: str,
        repo_id: str,
        branch: str,
        parent: str | None,
        files: dict[str, FileEntry],
        summary: str,
        description: str,
    ) -> str:
        manifest = {path: entry.__dict__ for path, entry in sorted(files.items())}
        record = {
            "parents": [parent] if parent else [],
            "title": summary,
            "message": description,
            "date": _now(),
            "files": manifest,
        }
        # Like a git commit id, the sha covers parent, tree, message and time; the counter keeps two
        # identical commits in the same millisecond apart.
        seed = json.dumps({**record, "n": next(self._commit_counter)}, sort_keys=True).encode()
        sha = hashlib.sha1(seed).hexdigest()
        record["id"] = sha
        repo_dir = self._repo_dir(repo_type, repo_id)
        _write_json_atomic(repo_dir / "commits" / f"{sha}.json", record)
        meta = json.loads((repo_dir / "repo.json").read_text())
        meta["refs"][branch] = sha
        meta["lastModified"] = record["date"]
        _write_json_atomic(repo_dir / "repo.json", meta)
        return sha

    def create_branch(self, repo_type: str, repo_id: str, branch: str, starting_point: str | None) -> None:
        with self._lock:
            meta = self._require_repo(repo_type, repo_id)
            if branch in meta["refs"]:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            sha = self.resolve_revision(repo_type, repo_id, starting_point or "main")
            meta["refs"][branch] = sha
            _write_json_atomic(self._repo_dir(repo_type, repo_id) / "repo.json", meta)

    def create_tag(self, repo_type: str, repo_id: str, tag: str, revision: str) -> None:
        with self._lock:
            meta = self._require_repo(repo_type, repo_id)
            if tag in meta.setdefault("tags", {}):
                raise HubError(409, f"Tag already exists: refs/tags/{tag}")
            meta["tags"][tag] = self.resolve_revision(repo_type, repo_id, revision)
            _write_json_atomic(self._repo_dir(repo_type, repo_id) / "repo.json", meta)

    def delete_branch(self, repo_type: str, repo_id: str, branch: str) -> None:
        with self._lock:
            meta = self._require_repo(repo_type, repo_id)
            if branch not in meta["refs"] or branch == "main":
                raise HubError(404 if branch != "main" else 403, f"Cannot delete branch {branch}")
            del meta["refs"][branch]
            _write_json_atomic(self._repo_dir(repo_type, repo_id) / "repo.json", meta)


# ----------------------------------------------------------------------------------------------------------
# HTTP layer
# ----------------------------------------------------------------------------------------------------------

_TYPE_FROM_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_API = r"^/api/(?P<plural>models|datasets|spaces)/" + _REPO
_PREFIXED_REPO = r"^/(?:(?P<prefix>datasets|spaces)/)?" + _REPO


@dataclass
class _Request:
    method: str
    path: str  # raw (still percent-encoded) path, without the query
    query: dict[str, list[str]]
    headers: Any
    chunks: Iterator[bytes]  # the request body, read on demand
    authenticated: bool
    match: re.Match[str]
    _body: bytes | None = None

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self.chunks)
        return self._body

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("1", "true", "yes")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"Request body is not valid JSON: {err}") from err


@dataclass
class _Response:
    status: int = 200
    payload: Any = None
    headers: dict[str, str] | None = None
    file: Path | None = None  # streamed body
    file_range: tuple[int, int] | None = None  # inclusive byte range of `file`
    content_type: str = "application/json"


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
    ):
        self._tmp_root = None if root is not None else tempfile.TemporaryDirectory(prefix="loopback-hub-")
        self.root = Path(root if root is not None else self._tmp_root.name)  # type: ignore[union-attr]
        self.store = HubStore(self.root)
        self.host = host
        self.user = user
        self.tree_page_size = tree_page_size
        self.unhandled_requests: list[str] = []
        """`"METHOD /path"` of every request no route matched, in order."""
        self.request_log: collections.deque[str] = collections.deque(maxlen=10_000)
        """`"METHOD /path?query STATUS"` of the latest requests (headers, hence tokens, are never kept)."""
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lfs_tickets: dict[str, tuple[str, int]] = {}
        self._repo_counter = itertools.count()
        self._routes = self._build_routes()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> LoopbackHub:
        """Bind the port and serve in a background thread; returns `self`."""
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._server = _Server((self.host, self._port), handler)
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
        return client_env(self.endpoint, token=token)

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
        env = self.client_env(token)
        for module_name, attr in _ENDPOINT_CONSTANTS:
            module = sys.modules.get(module_name)
            if module is not None and getattr(module, attr, None) != self.endpoint:
                raise RuntimeError(
                    f"{module_name}.{attr} is {getattr(module, attr)!r}, not {self.endpoint!r}: it was imported "
                    "before HF_ENDPOINT pointed at this loopback Hub. Set the environment from "
                    "`client_env()` before importing Hub libraries, or run the client code with `run_python`."
                )
        saved_env = {name: os.environ.get(name) for name in env}
        saved_attrs: dict[tuple[str, str], Any] = {}
        for module_name, attr, _ in _OFFLINE_SWITCHES:
            module = sys.modules.get(module_name)
            if module is not None and hasattr(module, attr):
                saved_attrs[module_name, attr] = getattr(module, attr)
        os.environ.update(env)
        self._set_switches(online=True)
        try:
            yield self
        finally:
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._set_switches(online=False, saved=saved_attrs)

    @staticmethod
    def _set_switches(*, online: bool, saved: dict[tuple[str, str], Any] | None = None) -> None:
        offline_env = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
        for module_name, attr, online_value in _OFFLINE_SWITCHES:
            module = sys.modules.get(module_name)
            if module is None or not hasattr(module, attr):
                continue
            if online:
                setattr(module, attr, online_value)
            elif saved is not None and (module_name, attr) in saved:
                setattr(module, attr, saved[module_name, attr])
            elif attr.endswith("OFFLINE"):
                # Imported inside the block: it read the online environment, so bring it back to the
                # environment's offline setting rather than leaving the process online.
                setattr(module, attr, offline_env)

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

    # -- routing -----------------------------------------------------------------------------------------

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Any, bool]]:
        # (method, pattern, handler, needs authentication)
        routes = [
            ("GET", r"^/api/whoami-v2$", self._whoami, True),
            ("GET", r"^/api/agent-harnesses$", self._agent_harnesses, False),
            ("POST", r"^/api/repos/create$", self._create_repo, True),
            ("DELETE", r"^/api/repos/delete$", self._delete_repo, True),
            ("POST", r"^/api/validate-yaml$", self._validate_yaml, False),
            ("GET", _API + r"$", self._repo_info, False),
            ("GET", _API + r"/revision/(?P<rev>[^/]+)$", self._repo_info, False),
            ("GET", _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$", self._tree, False),
            ("POST", _API + r"/paths-info/(?P<rev>[^/]+)$", self._paths_info, False),
            ("GET", _API + r"/refs$", self._refs, False),
            ("GET", _API + r"/commits/(?P<rev>[^/]+)$", self._commits, False),
            ("POST", _API + r"/preupload/(?P<rev>[^/]+)$", self._preupload, True),
            ("POST", _API + r"/commit/(?P<rev>[^/]+)$", self._commit, True),
            ("POST", _API + r"/branch/(?P<rev>[^/]+)$", self._create_branch, True),
            ("DELETE", _API + r"/branch/(?P<rev>[^/]+)$", self._delete_branch, True),
            ("POST", _API + r"/tag/(?P<rev>[^/]+)$", self._create_tag, True),
            ("PUT", _API + r"/settings$", self._settings, True),
            ("POST", _PREFIXED_REPO + r"\.git/info/lfs/objects/batch$", self._lfs_batch, True),
            ("PUT", r"^/lfs-upload/(?P<ticket>[0-9a-f]+)$", self._lfs_upload, False),
            ("POST", r"^/lfs-verify$", self._lfs_verify, True),
            ("GET", _PREFIXED_REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", self._resolve, False),
            ("HEAD", _PREFIXED_REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", self._resolve, False),
        ]
        return [(method, re.compile(pattern), fn, auth) for method, pattern, fn, auth in routes]

    def _route(self, method: str, path: str) -> tuple[re.Match[str], Any, bool] | None:
        for route_method, pattern, fn, auth in self._routes:
            if route_method == method and (match := pattern.match(path)):
                return match, fn, auth
        return None

    # -- shared checks -----------------------------------------------------------------------------------

    @staticmethod
    def _repo_ref(req: _Request) -> tuple[str, str]:
        groups = req.match.groupdict()
        if groups.get("plural"):
            repo_type = _TYPE_FROM_PLURAL[groups["plural"]]
        else:
            repo_type = {None: "model", "datasets": "dataset", "spaces": "space"}[groups.get("prefix")]
        return repo_type, unquote(groups["repo"])

    def _readable_repo(self, req: _Request) -> tuple[str, str, dict[str, Any]]:
        repo_type, repo_id = self._repo_ref(req)
        meta = self.store.get_repo(repo_type, repo_id)
        # A private repo is indistinguishable from a missing one without credentials, as on the Hub.
        if meta is None or (meta["private"] and not req.authenticated):
            raise HubError(
                401 if meta is not None else 404,
                f"Repository not found: {repo_type} {repo_id}",
                "RepoNotFound",
            )
        return repo_type, repo_id, meta

    def _revision(self, req: _Request) -> tuple[str, str, dict[str, Any], str]:
        repo_type, repo_id, meta = self._readable_repo(req)
        rev = unquote(req.match.group("rev") or "main") if "rev" in req.match.groupdict() else "main"
        return repo_type, repo_id, meta, self.store.resolve_revision(repo_type, repo_id, rev)

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}"

    # -- API handlers ------------------------------------------------------------------------------------

    def _whoami(self, req: _Request) -> _Response:
        return _Response(
            payload={
                "type": "user",
                "id": "loopback-user-id",
                "name": self.user,
                "fullname": "Loopback Hub user",
                "email": None,
                "emailVerified": False,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write"}},
            }
        )

    def _agent_harnesses(self, req: _Request) -> _Response:
        # huggingface_hub fetches this registry for its user agent; an empty one detects no agent.
        return _Response(payload={"standardEnvVars": [], "harnesses": {}})

    def _create_repo(self, req: _Request) -> _Response:
        body = req.json()
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {repo_type!r}; expected one of {REPO_TYPES}")
        name = body.get("name")
        if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name.endswith(".git"):
            raise HubError(400, f"Invalid repo name {name!r}")
        repo_id = f"{body.get('organization') or self.user}/{name}"
        sdk = body.get("sdk")
        if repo_type == "space" and sdk not in SPACE_SDKS:
            raise HubError(400, f"A space needs `sdk` in {SPACE_SDKS}, got {sdk!r}")
        private = body.get("private") is True or body.get("visibility") == "private"
        created = self.store.create_repo(repo_type, repo_id, private=private, sdk=sdk)
        url = self._repo_url(repo_type, repo_id)
        if not created:
            # huggingface_hub's `create_repo(exist_ok=True)` reads the url from this error body, as the Hub sends it.
            raise HubError(409, f"You already created this {repo_type} repo: {repo_id}", extra={"url": url})
        return _Response(payload={"url": url, "name": repo_id, "id": uuid.uuid4().hex[:24]})

    def _delete_repo(self, req: _Request) -> _Response:
        body = req.json()
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self.user}/{body.get('name')}"
        if not self.store.delete_repo(repo_type, repo_id):
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return _Response(payload={})

    def _settings(self, req: _Request) -> _Response:
        repo_type, repo_id, _ = self._readable_repo(req)
        body = req.json()
        if "private" in body:
            self.store.set_private(repo_type, repo_id, bool(body["private"]))
        return _Response(payload={})

    def _validate_yaml(self, req: _Request) -> _Response:
        content = str(req.json().get("content", ""))
        try:
            _front_matter(content)
        except ValueError as err:
            return _Response(status=400, payload={"errors": [{"message": str(err)}], "warnings": []})
        return _Response(payload={"errors": [], "warnings": []})

    def _repo_info(self, req: _Request) -> _Response:
        repo_type, repo_id, meta, sha = self._revision(req)
        commit = self.store.read_commit(repo_type, repo_id, sha)
        files = self.store.manifest(repo_type, repo_id, sha)
        with_blobs = req.flag("blobs")
        siblings = []
        for path, entry in files.items():
            sibling: dict[str, Any] = {"rfilename": path}
            if with_blobs:
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.lfs:
                    sibling["lfs"] = {
                        "size": entry.size,
                        "sha256": entry.sha256,
                        "pointerSize": entry.pointer_size,
                    }
            siblings.append(sibling)
        card_data = None
        if "README.md" in files:
            readme = self.store.blob_path(files["README.md"].sha256).read_text(errors="replace")
            with contextlib.suppress(ValueError):
                card_data = _front_matter(readme)
        payload: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "createdAt": meta["createdAt"],
            "lastModified": commit["date"],
            "private": meta["private"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(entry.size for entry in files.values()),
        }
        if card_data is not None:
            payload["cardData"] = card_data
        if repo_type == "model":
            payload["modelId"] = repo_id
        if repo_type == "space":
            payload.update(sdk=meta["sdk"], subdomain=repo_id.replace("/", "-").lower(), host=self.endpoint)
        return _Response(payload=payload)

    def _tree_entries(
        self, repo_type: str, repo_id: str, sha: str, files: dict[str, FileEntry], expand: bool
    ) -> dict[str, dict[str, Any]]:
        """Every file and folder of a manifest, as the tree API describes them, by path."""
        entries: dict[str, dict[str, Any]] = {}
        children: dict[str, list[str]] = {}
        for path, entry in files.items():
            item: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
            if entry.lfs:
                item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
            entries[path] = item
            parts = path.split("/")
            for depth in range(1, len(parts)):
                children.setdefault("/".join(parts[:depth]), []).append(path)
        for folder, paths in children.items():
            tree_id = hashlib.sha1(
                "\n".join(f"{p} {files[p].oid}" for p in sorted(paths)).encode()
            ).hexdigest()
            entries[folder] = {"type": "directory", "oid": tree_id, "size": 0, "path": folder}
        if expand:
            for path, commit in self._last_commits(repo_type, repo_id, sha, entries).items():
                entries[path]["lastCommit"] = {
                    "id": commit["id"],
                    "title": commit["title"],
                    "date": commit["date"],
                }
                if entries[path]["type"] == "file":
                    entries[path]["securityFileStatus"] = {
                        "status": "safe",
                        "avScan": None,
                        "pickleImportScan": None,
                    }
        return entries

    def _last_commits(
        self, repo_type: str, repo_id: str, sha: str, entries: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """For each path, the newest commit that changed it (or anything under it)."""
        found: dict[str, dict[str, Any]] = {}
        history = self.store.history(repo_type, repo_id, sha)
        for commit, parent in itertools.zip_longest(history, history[1:]):
            before = parent["files"] if parent else {}
            changed = {
                p for p in set(commit["files"]) | set(before) if commit["files"].get(p) != before.get(p)
            }
            for path in entries:
                if path not in found and any(c == path or c.startswith(path + "/") for c in changed):
                    found[path] = commit
            if len(found) == len(entries):
                break
        return found

    def _tree(self, req: _Request) -> _Response:
        repo_type, repo_id, _, sha = self._revision(req)
        folder = unquote(req.match.group("path") or "").strip("/")
        expand = req.flag("expand")
        files = self.store.manifest(repo_type, repo_id, sha)
        entries = self._tree_entries(repo_type, repo_id, sha, files, expand)
        if folder and entries.get(folder, {}).get("type") != "directory":
            raise HubError(404, f"{folder} does not exist on {sha}", "EntryNotFound", {"X-Repo-Commit": sha})
        prefix = folder + "/" if folder else ""
        listed = [
            entry
            for path, entry in entries.items()
            if path.startswith(prefix) and (req.flag("recursive") or "/" not in path[len(prefix) :])
        ]
        # Folders first then files, each by path, like the Hub.
        listed.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        page_size = max(1, min(self.tree_page_size, 50) if expand else self.tree_page_size)
        start = int(req.param("cursor") or 0)
        page = listed[start : start + page_size]
        headers = {"X-Repo-Commit": sha}
        if start + page_size < len(listed):
            query = "&".join(
                f"{k}={quote(v[0])}" for k, v in sorted(req.query.items()) if k not in ("cursor", "limit")
            )
            next_url = f"{self.endpoint}{req.path}?{query}{'&' if query else ''}cursor={start + page_size}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        return _Response(payload=page, headers=headers)

    def _paths_info(self, req: _Request) -> _Response:
        repo_type, repo_id, _, sha = self._revision(req)
        content_type = req.headers.get("Content-Type", "")
        if "json" in content_type:
            body = req.json()
            paths, expand = body.get("paths", []), bool(body.get("expand"))
        else:
            form = parse_qs(req.body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), (form.get("expand", ["false"])[0].lower() == "true")
        files = self.store.manifest(repo_type, repo_id, sha)
        entries = self._tree_entries(repo_type, repo_id, sha, files, expand)
        found = [entries[p.strip("/")] for p in paths if p.strip("/") in entries]
        return _Response(payload=found, headers={"X-Repo-Commit": sha})

    def _refs(self, req: _Request) -> _Response:
        _, _, meta = self._readable_repo(req)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
            for name, sha in meta["refs"].items()
        ]
        tags = [
            {"name": name, "ref": f"refs/tags/{name}", "targetCommit": sha}
            for name, sha in meta.get("tags", {}).items()
        ]
        return _Response(payload={"branches": branches, "converts": [], "tags": tags, "pullRequests": []})

    def _commits(self, req: _Request) -> _Response:
        repo_type, repo_id, _, sha = self._revision(req)
        payload = [
            {
                "id": commit["id"],
                "title": commit["title"],
                "message": commit["message"],
                "date": commit["date"],
                "authors": [{"user": self.user}],
            }
            for commit in self.store.history(repo_type, repo_id, sha)
        ]
        return _Response(payload=payload)

    def _preupload(self, req: _Request) -> _Response:
        self._reject_pull_requests(req)
        repo_type, repo_id, _, sha = self._revision(req)
        body = req.json()
        files = self.store.manifest(repo_type, repo_id, sha)
        patterns = _lfs_patterns(
            self.store.blob_path(files[".gitattributes"].sha256).read_text()
            if ".gitattributes" in files
            else ""
        )
        answer = []
        for item in body.get("files", []):
            path = _check_repo_path(str(item.get("path", "")))
            sample = base64.b64decode(item.get("sample") or "")
            size = int(item.get("size") or 0)
            is_lfs = size >= LFS_SIZE_THRESHOLD or b"\0" in sample or _matches_any(path, patterns)
            existing = files.get(path)
            oid = None
            if existing is not None:
                # The client compares this with its local oid to skip unchanged files: sha256 for LFS, git
                # blob sha1 otherwise.
                oid = existing.sha256 if existing.lfs else existing.oid
            answer.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if is_lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        return _Response(payload={"files": answer, "commitOid": sha})

    def _commit(self, req: _Request) -> _Response:
        self._reject_pull_requests(req)
        repo_type, repo_id, _ = self._readable_repo(req)
        branch = unquote(req.match.group("rev"))
        lines = [line for line in req.body.splitlines() if line.strip()]
        if not lines:
            raise HubError(400, "Empty commit payload")
        try:
            items = [json.loads(line) for line in lines]
        except json.JSONDecodeError as err:
            raise HubError(400, f"Commit payload is not NDJSON: {err}") from err
        header = items[0].get("value", {}) if items[0].get("key") == "header" else None
        if header is None:
            raise HubError(400, "The first line of a commit payload must be its header")
        sha = self.store.commit(
            repo_type,
            repo_id,
            branch,
            [(item.get("key"), item.get("value") or {}) for item in items[1:]],
            summary=str(header.get("summary") or "Upload files"),
            description=str(header.get("description") or ""),
            parent_commit=header.get("parentCommit"),
        )
        return _Response(
            payload={
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    @staticmethod
    def _reject_pull_requests(req: _Request) -> None:
        if req.flag("create_pr"):
            raise HubError(400, "The loopback Hub does not implement pull requests (create_pr=True)")

    def _create_branch(self, req: _Request) -> _Response:
        repo_type, repo_id, _ = self._readable_repo(req)
        body = req.json() if req.body else {}
        self.store.create_branch(
            repo_type, repo_id, unquote(req.match.group("rev")), body.get("startingPoint")
        )
        return _Response(payload={})

    def _create_tag(self, req: _Request) -> _Response:
        repo_type, repo_id, _ = self._readable_repo(req)
        tag = req.json().get("tag")
        if not tag:
            raise HubError(400, "A tag needs a name (`tag` in the body)")
        self.store.create_tag(repo_type, repo_id, str(tag), unquote(req.match.group("rev")))
        return _Response(payload={})

    def _delete_branch(self, req: _Request) -> _Response:
        repo_type, repo_id, _ = self._readable_repo(req)
        self.store.delete_branch(repo_type, repo_id, unquote(req.match.group("rev")))
        return _Response(payload={})

    # -- LFS ---------------------------------------------------------------------------------------------

    def _lfs_batch(self, req: _Request) -> _Response:
        self._readable_repo(req)
        body = req.json()
        if body.get("operation") != "upload":
            raise HubError(
                400, f"The loopback Hub's LFS batch API only uploads, got {body.get('operation')!r}"
            )
        if "basic" not in body.get("transfers", ["basic"]):
            raise HubError(400, "The loopback Hub's LFS batch API only offers the 'basic' transfer")
        objects = []
        for obj in body.get("objects", []):
            oid, size = str(obj.get("oid", "")), obj.get("size")
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": oid, "size": size if isinstance(size, int) else 0, "error": {"code": 422, "message": "Invalid object"}})  # fmt: skip
                continue
            if self.store.has_blob(oid, size):
                objects.append({"oid": oid, "size": size})  # already stored: no actions, the client skips it
                continue
            # Like a presigned storage URL, the upload link needs no token but is good for one object only.
            ticket = secrets.token_hex(16)
            self._lfs_tickets[ticket] = (oid, size)
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{self.endpoint}/lfs-upload/{ticket}", "expires_in": 3600},
                        "verify": {"href": f"{self.endpoint}/lfs-verify", "header": {}},
                    },
                }
            )
        return _Response(
            payload={"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            content_type="application/vnd.git-lfs+json",
        )

    def _lfs_verify(self, req: _Request) -> _Response:
        body = req.json()
        if not self.store.has_blob(str(body.get("oid", "")), body.get("size")):
            raise HubError(404, f"LFS object {body.get('oid')} ({body.get('size')} bytes) is not stored")
        return _Response(payload={"success": True})

    def _lfs_upload(self, req: _Request) -> _Response:
        claimed = self._lfs_tickets.pop(req.match.group("ticket"), None)
        if claimed is None:
            raise HubError(403, "Unknown or already used LFS upload link")
        oid, size = claimed
        self.store.put_blob_stream(req.chunks, oid, size)  # streamed: LFS files can be large
        return _Response(payload={}, headers={"ETag": f'"{oid}"'})

    # -- file resolution ---------------------------------------------------------------------------------

    def _resolve(self, req: _Request) -> _Response:
        repo_type, repo_id, _, sha = self._revision(req)
        path = unquote(req.match.group("path"))
        entry = self.store.manifest(repo_type, repo_id, sha).get(path)
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if entry is None:
            raise HubError(404, f"Entry not found: {path} at {sha}", "EntryNotFound", headers)
        etag = entry.sha256 if entry.lfs else entry.oid
        headers["ETag"] = f'"{etag}"'
        if entry.lfs:
            # On the Hub these come with the redirect to the CDN; huggingface_hub prefers them over ETag.
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        headers["Content-Disposition"] = f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}"
        blob = self.store.blob_path(entry.sha256)
        byte_range = _parse_range(req.headers.get("Range"), entry.size)
        if byte_range == "unsatisfiable":
            headers["Content-Range"] = f"bytes */{entry.size}"
            raise HubError(416, f"Range {req.headers.get('Range')} not satisfiable for {entry.size} bytes", None, headers)  # fmt: skip
        if byte_range is None:
            return _Response(headers=headers, file=blob, content_type="application/octet-stream")
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        return _Response(
            status=206,
            headers=headers,
            file=blob,
            file_range=byte_range,
            content_type="application/octet-stream",
        )


# Module attributes that hold the endpoint (read once at import) and the offline switches (flipped by
# `LoopbackHub.online`). `HF_HUB_DISABLE_XET` is forced on: uploads would otherwise go to a Xet endpoint.
_ENDPOINT_CONSTANTS = (
    ("huggingface_hub.constants", "ENDPOINT"),
    ("datasets.config", "HF_ENDPOINT"),
    ("evaluate.config", "HF_ENDPOINT"),
)
_OFFLINE_SWITCHES = (
    ("huggingface_hub.constants", "HF_HUB_OFFLINE", False),
    ("huggingface_hub.constants", "HF_HUB_DISABLE_XET", True),
    ("datasets.config", "HF_HUB_OFFLINE", False),
    ("datasets.config", "HF_DATASETS_OFFLINE", False),
    ("evaluate.config", "HF_EVALUATE_OFFLINE", False),
)


def client_env(endpoint: str, token: str = DUMMY_TOKEN) -> dict[str, str]:
    """Environment variables that point the Hugging Face client libraries at a loopback Hub.

    Args:
        endpoint (`str`): The Hub's base URL, e.g. `LoopbackHub.endpoint`.
        token (`str`, *optional*): The token to send; the loopback Hub accepts any.

    Returns:
        `dict[str, str]`: `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_DISABLE_XET=1` (mandatory: with Xet enabled,
        uploads bypass the LFS API this server implements) and `HF_HUB_OFFLINE=0`. Set them before the
        libraries are imported: they read them once, at import.
    """
    return {
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": token,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
    }


def _front_matter(content: str) -> dict[str, Any] | None:
    """The YAML header of a repo card, `None` without one; `ValueError` if it is not a YAML mapping."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(?:\n|$)", content, flags=re.DOTALL)
    if match is None:
        return None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        raise ValueError(f"Invalid YAML in the card's metadata: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"The card's metadata must be a YAML mapping, got {type(data).__name__}")
    return data


def _lfs_patterns(gitattributes: str) -> list[str]:
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def _matches_any(path: str, patterns: list[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    # A pattern without a slash matches the file name at any depth, as in .gitattributes.
    return any(fnmatch.fnmatchcase(path if "/" in p else name, p.lstrip("/")) for p in patterns)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """`(start, end)` inclusive for a single `bytes=` range, `None` to serve everything, or "unsatisfiable"."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or not any(match.groups()):
        return None  # several ranges or another unit: serving the whole file is allowed by RFC 9110
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return "unsatisfiable"
    return start, end


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-download on purpose (a ranged read that got enough): not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("LoopbackHub: client %s hung up", client_address)
        else:
            logger.exception("LoopbackHub: error while handling a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Parses requests, dispatches them to the `LoopbackHub` routes and writes the answers."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect
    server_version = "LoopbackHub/1.0"
    hub: LoopbackHub

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry no secret (the token is a header), but keep them at debug level: tests are
        # chatty enough.
        logger.debug("%s %s", self.address_string(), format % args)

    # -- request body ------------------------------------------------------------------------------------

    def _body_chunks(self) -> Iterator[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                remaining = size
                while remaining:
                    chunk = self.rfile.read(min(remaining, _CHUNK))
                    if not chunk:
                        raise ConnectionError("client closed the connection mid-chunk")
                    remaining -= len(chunk)
                    yield chunk
                self.rfile.readline()  # CRLF after the chunk
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                chunk = self.rfile.read(min(remaining, _CHUNK))
                if not chunk:
                    raise ConnectionError("client closed the connection mid-body")
                remaining -= len(chunk)
                yield chunk

    def _authenticated(self) -> bool | None:
        """`True` with a bearer token, `False` without any, `None` if the header is malformed."""
        header = self.headers.get("Authorization")
        if header is None:
            return False
        scheme, _, token = header.partition(" ")
        return True if scheme.lower() == "bearer" and token.strip() else None

    # -- dispatch ----------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        routed = hub._route(method, split.path)
        chunks = self._body_chunks()
        try:
            if routed is None:
                hub.unhandled_requests.append(f"{method} {split.path}")
                logger.warning("LoopbackHub: unhandled route %s %s (answered 404)", method, split.path)
                raise HubError(404, f"The loopback Hub does not implement {method} {split.path}")
            match, handler, needs_auth = routed
            authenticated = self._authenticated()
            if authenticated is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            if needs_auth and not authenticated:
                raise HubError(401, f"Authentication required for {method} {split.path}: pass a token")
            request = _Request(
                method, split.path, parse_qs(split.query), self.headers, chunks, authenticated, match
            )
            response = handler(request)
        except HubError as err:
            headers = {**err.headers, "X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            response = _Response(
                status=err.status, payload={"error": err.message, **err.extra}, headers=headers
            )
        except Exception as err:  # a bug in the emulation: answer 500 and say so loudly
            logger.exception("LoopbackHub: error while serving %s %s", method, split.path)
            response = _Response(status=500, payload={"error": f"Loopback Hub internal error: {err!r}"})
        self._finish_body(chunks)
        hub.request_log.append(f"{method} {self.path} {response.status}")
        self._send(method, response)

    def _finish_body(self, chunks: Iterator[bytes]) -> None:
        """Read what the handler left of the body, so the kept-alive connection stays in sync."""
        try:
            for _ in chunks:
                pass
        except (ConnectionError, ValueError):
            self.close_connection = True

    def _send(self, method: str, response: _Response) -> None:
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
