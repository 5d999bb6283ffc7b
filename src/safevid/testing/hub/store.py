"""Disk storage of the loopback Hub: repos, their commits and content-addressed blobs.

```
<root>/blobs/<sha256[:2]>/<sha256>             file contents, content-addressed (regular and LFS files alike)
<root>/repos/<type>s/<org>/<name>/repo.json   repo metadata and refs (branch -> commit sha)
<root>/repos/<type>s/<org>/<name>/commits/<sha>.json   one commit: parents, message and the full file manifest
```

Every path is built from checked names only — a blob's key must be 64 hex digits, an organisation or repo
name a Hub name (no ``/``, no ``..``) — and checked to lie inside the root, so no request can make the
server read, write or delete a file elsewhere.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safevid.testing.hub.errors import HubError
from safevid.testing.hub.gitattributes import DEFAULT_GITATTRIBUTES


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


def check_repo_path(path: str) -> str:
    """`path` if it is a valid relative path inside a repo; a 400 `HubError` otherwise."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_sha256(sha256: str) -> str:
    """`sha256` if it is 64 lowercase hex digits (a blob key); a 400 `HubError` otherwise."""
    if not _SHA256.fullmatch(sha256):
        raise HubError(400, f"Invalid LFS object id {sha256!r}: expected 64 hex digits (a SHA-256)")
    return sha256


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if it is `<org>/<name>` with two Hub names; a 400 `HubError` otherwise."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_NAME.fullmatch(part) and ".." not in part for part in parts):
        raise HubError(
            400, f"Invalid repo id {repo_id!r}: expected <organization>/<name>, letters, digits, ._-"
        )
    return repo_id


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    os.replace(tmp, path)


class HubStore:
    """Disk-backed repos, commits and content-addressed blobs; safe to use from several threads.

    Args:
        root (`str` or `os.PathLike`): Storage folder; created if missing, reused as is if it exists.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self._real_root = self.root.resolve()
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._commit_counter = itertools.count()

    # -- blobs -------------------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self._inside(self.root / "blobs" / sha256[:2] / sha256)

    def _inside(self, path: Path) -> Path:
        """`path`, checked to resolve inside the root (a 400 `HubError` otherwise: never served or written)."""
        if not path.resolve().is_relative_to(self._real_root):
            raise HubError(400, f"Path outside the Hub's storage: {path}")
        return path

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
        return self._inside(self.root / "repos" / f"{repo_type}s" / check_repo_id(repo_id))

    def _save_meta(self, repo_type: str, repo_id: str, meta: dict[str, Any]) -> None:
        _write_json_atomic(self._repo_dir(repo_type, repo_id) / "repo.json", meta)

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
            self._save_meta(repo_type, repo_id, meta)
            data = DEFAULT_GITATTRIBUTES.encode()
            entry = FileEntry(len(data), self.put_blob(data), git_blob_oid(data), False)
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
            self._save_meta(repo_type, repo_id, meta)

    def _require_repo(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        meta = self.get_repo(repo_type, repo_id)
        if meta is None:
            raise HubError.repo_not_found(repo_type, repo_id)
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
        path = check_repo_path(str(value.get("path", "")))
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
        _write_json_atomic(self._repo_dir(repo_type, repo_id) / "commits" / f"{sha}.json", record)
        meta = self._require_repo(repo_type, repo_id)
        meta["refs"][branch] = sha
        meta["lastModified"] = record["date"]
        self._save_meta(repo_type, repo_id, meta)
        return sha

    # -- refs --------------------------------------------------------------------------------------------

    def create_branch(self, repo_type: str, repo_id: str, branch: str, starting_point: str | None) -> None:
        with self._lock:
            meta = self._require_repo(repo_type, repo_id)
            if branch in meta["refs"]:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            meta["refs"][branch] = self.resolve_revision(repo_type, repo_id, starting_point or "main")
            self._save_meta(repo_type, repo_id, meta)

    def create_tag(self, repo_type: str, repo_id: str, tag: str, revision: str) -> None:
        with self._lock:
            meta = self._require_repo(repo_type, repo_id)
            if tag in meta.setdefault("tags", {}):
                raise HubError(409, f"Tag already exists: refs/tags/{tag}")
            meta["tags"][tag] = self.resolve_revision(repo_type, repo_id, revision)
            self._save_meta(repo_type, repo_id, meta)

    def delete_branch(self, repo_type: str, repo_id: str, branch: str) -> None:
        with self._lock:
            meta = self._require_repo(repo_type, repo_id)
            if branch not in meta["refs"] or branch == "main":
                raise HubError(404 if branch != "main" else 403, f"Cannot delete branch {branch}")
            del meta["refs"][branch]
            self._save_meta(repo_type, repo_id, meta)
