"""An on-disk cache of successful responses, so a re-run never pays for a request twice.

Entries are keyed by a content hash of everything that determines a response: backend kind, model,
revision, the server (an HTTP backend's URL, without credentials: two servers may serve different weights
under one model name), messages (a sampled video counts by the hash of its frame bytes and timestamps, a local
file by the hash of its bytes), sampling parameters and the structured-output spec. One JSON file
per entry, written to a temporary file in the same folder and moved into place with
`os.replace`: concurrent writers (tasks, threads, processes) and a process killed mid-write can
never leave a torn entry, and an unreadable entry counts as a miss. Only successes are stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safevid.backends.types import ChatRequest, ChatResult
from safevid.paths import safevid_home

# Bump when the key layout or the entry format changes: old entries then simply miss.
_FORMAT = 1


def checkpoint_fingerprint(model: str) -> str | None:
    """A cheap identity of a local checkpoint folder's weights, for cache keys of in-process backends.

    A folder is often retrained in place (``output_dir`` of a DPO run): its path alone would serve the old
    model's cached answers. The name, size and modification time of every file in it change with any
    re-save, without reading gigabytes of weights. ``None`` for a Hub id (its `revision` is the identity).
    """
    root = Path(model)
    if not root.is_dir():
        return None
    stats = sorted(
        (str(path.relative_to(root)), path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file()
    )
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def default_cache_dir() -> Path:
    """``safevid_home()/cache/responses``."""
    return safevid_home() / "cache" / "responses"


class ResponseCache:
    """A folder of cached responses (see the module docstring).

    Args:
        directory: Where entries live; `default_cache_dir()` if not given.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str, request: ChatRequest) -> ChatResult | None:
        """The cached result for ``key``, or `None` on a miss (or an unreadable entry)."""
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("format") != _FORMAT:
            return None
        return ChatResult.from_cache_dict(request, data["result"])

    def put(self, key: str, result: ChatResult) -> None:
        """Store a successful result atomically; failures are never stored."""
        if not result.ok:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"format": _FORMAT, "result": result.to_cache_dict()}, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json")) if self.directory.exists() else 0


def request_key(kind: str, model: str, revision: str | None, request: ChatRequest, extra: Any = None) -> str:
    """The content hash identifying ``request`` sent to ``model`` through a backend of ``kind``.

    ``extra`` holds backend settings that change the response (for example how video is sent).
    """
    payload = {
        "format": _FORMAT,
        "kind": kind,
        "model": model,
        "revision": revision,
        "messages": [_canonical_message(m) for m in request.messages],
        "sampling": request.sampling.to_dict(),
        "structured": request.structured.to_dict() if request.structured else None,
        "extra": extra,
    }
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_unserializable)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def _unserializable(value: Any) -> Any:
    raise TypeError(f"cannot hash a {type(value).__name__} in a request for the response cache")


def _canonical_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message["content"]
    if isinstance(content, list):
        content = [_canonical_part(p) for p in content]
    return {**message, "content": content}


def _canonical_part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part["type"]
    if kind == "video":
        return {"type": "video", "video": media_fingerprint(part["video"])}
    if kind == "image":
        return {"type": "image", "image": media_fingerprint(part["image"])}
    return part


def media_fingerprint(media: Any) -> str:
    """A content hash of a video/image given as sampled frames, a PIL image, a local path or a URL."""
    if hasattr(media, "frames") and hasattr(media, "timestamps"):
        digest = hashlib.sha256()
        frames = media.frames.contiguous()
        digest.update(repr((tuple(frames.shape), str(frames.dtype), list(media.timestamps))).encode())
        digest.update(frames.numpy().tobytes())
        return "frames:" + digest.hexdigest()
    if hasattr(media, "tobytes") and hasattr(media, "size") and hasattr(media, "mode"):  # PIL image
        digest = hashlib.sha256(repr((media.size, media.mode)).encode())
        digest.update(media.tobytes())
        return "pixels:" + digest.hexdigest()
    text = os.fspath(media) if isinstance(media, os.PathLike) else media
    if not isinstance(text, str):
        raise TypeError(f"unsupported media of type {type(media).__name__} in a request")
    if text.startswith("data:"):
        return "data:" + hashlib.sha256(text.encode()).hexdigest()
    if "://" in text and not text.startswith("file://"):
        return "url:" + text
    return "file:" + _file_digest(Path(text.removeprefix("file://")))


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) so a batch hashes each video once."""
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _FILE_DIGESTS[memo] = base64.b32encode(digest.digest()).decode().rstrip("=").lower()
    return _FILE_DIGESTS[memo]
