"""Video references: the one place where a dataset or benchmark row's video cell becomes something readable.

A video cell is untrusted input: whoever wrote the dataset chose it. `VideoReferences.resolve` turns a cell into
encoded ``bytes`` or a local file, by these rules:

- ``bytes`` (or a ``{"bytes", "path"}`` dict with bytes, as `datasets.Video` stores them): as is.
- a relative path: a file inside `video_root` when set, else inside the dataset's own folder (`dataset_dir`) or
  Hub repository (`hub_dataset`, fetched with `huggingface_hub.hf_hub_download`) — never the working directory.
- an absolute path (also ``file://``), or a relative one that climbs out of its folder with ``..`` (or through a
  symbolic link): refused unless it lies under one of the roots of `allowed_local_media_path` (as vLLM's
  ``--allowed-local-media-path``). A refused cell is never opened.
- an ``http(s)://`` URL: downloaded once into `cache_dir`, refused past `max_download_bytes` or
  `download_deadline_s` (a wall-clock deadline), redirected elsewhere than http(s), or if its host is a loopback or
  private address unless `allow_private_urls` (`safevid.video.download`).
- ``<archive>::<member>`` (e.g. ``videos.tar::video/1_Violent_Crimes/a.mp4``), or any relative path when `archive`
  is set: the member of an archive (tar, plain or compressed, or zip). The archive, itself resolved by the rules
  above, is unpacked once into `cache_dir` by `safevid.video.archives.extract_archive`, which refuses the whole
  archive if a member is a link, a device or climbs out with ``..``.
- a relative path missing from its folder whose first folder was published as an archive beside it
  (``videos/a.mp4`` with ``videos.tar.gz`` next to the absent ``videos/``, as align-anything publishes): that
  archive's member ``videos/a.mp4`` (or ``a.mp4``), unpacked the same way.

Every failure is a `VideoReferenceError` naming the row, the reference, the cause and, where one exists, the option
that allows or fixes it.

Example:

```python
>>> refs = VideoReferences(dataset_dir="data/my-set", allowed_local_media_path=("/mnt/videos",))
>>> refs.resolve("clips/a.mp4", row_name="row 3")  # doctest: +SKIP
PosixPath('data/my-set/clips/a.mp4')
```
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from safevid.video.download import DownloadRefused, download

__all__ = ["VideoReferenceError", "VideoReferences", "download"]

MAX_DOWNLOAD_BYTES = 2 * 1024**3
DOWNLOAD_DEADLINE_S = 600.0
ARCHIVE_SEPARATOR = "::"
ALLOW_OPTION = "allowed_local_media_path"


class VideoReferenceError(ValueError):
    """A video cell that cannot be resolved, or may not be read.

    Attributes:
        row_name (`str`): the row, as messages name it.
        reference (`str`): the cell as written (``<N bytes>`` for bytes).
        reason (`str`): a short code: ``empty_cell``, ``unsupported_cell``, ``local_path_not_allowed``,
            ``no_base_folder``, ``missing_file``, ``unreadable_path``, ``download_failed``, ``url_not_allowed``, ``bad_archive``,
            ``missing_archive_member``.
        cause (`str`): what went wrong and how to fix it, in words.
    """

    def __init__(self, row_name: str, reference: str, reason: str, cause: str):
        self.row_name, self.reference, self.reason, self.cause = row_name, reference, reason, cause
        shown = reference if len(reference) <= 200 else f"{reference[:100]}...({len(reference)} characters)"
        super().__init__(f"{row_name}: video {shown!r}: {cause}")

    def __reduce__(self):
        # Keeps the four-argument constructor across `datasets.map` worker processes.
        return (type(self), (self.row_name, self.reference, self.reason, self.cause))


@dataclass(frozen=True)
class VideoReferences:
    """Where a dataset's video cells may be read from, and the limits on reading them.

    Args:
        dataset_dir (`str`, *optional*):
            The dataset's own folder (a local copy or a Hub snapshot): relative cells resolve inside it.
        hub_dataset (`str`, *optional*):
            The dataset's Hub id, when it is not local: relative cells are files of that repository.
        hub_revision (`str`, *optional*):
            The revision of `hub_dataset`.
        video_root (`str`, *optional*):
            A folder holding the videos; relative cells resolve inside it instead of the dataset's folder.
        archive (`str`, *optional*):
            An archive (tar or zip; resolved as a cell is) whose members the relative cells name.
        allowed_local_media_path (`tuple[str, ...]`, defaults to `()`):
            Roots under which absolute cells, and cells climbing out with ``..``, may be read. Empty: none may.
        cache_dir (`str`, *optional*):
            Downloads and extracted archives; defaults to ``$SAFEVID_HOME/media``.
        max_download_bytes (`int`, defaults to 2 GiB):
            A URL announcing or sending more is refused.
        download_deadline_s (`float`, defaults to 600):
            A URL not downloaded within this many seconds (wall clock, redirects included) is refused.
        allow_private_urls (`bool`, *optional*):
            Download URLs whose host is a loopback or private address (refused by default, so a dataset cannot
            reach services on this machine or its network). Default: ``$SAFEVID_ALLOW_PRIVATE_URLS``.
    """

    dataset_dir: str | None = None
    hub_dataset: str | None = None
    hub_revision: str | None = None
    video_root: str | None = None
    archive: str | None = None
    allowed_local_media_path: tuple[str, ...] = ()
    cache_dir: str | None = None
    max_download_bytes: int = MAX_DOWNLOAD_BYTES
    download_deadline_s: float = DOWNLOAD_DEADLINE_S
    allow_private_urls: bool | None = None

    def resolve(self, cell: Any, *, row_name: str) -> bytes | Path:
        """The encoded video of one cell: its bytes, or a local file allowed by these rules.

        Args:
            cell: ``bytes``, a string (path, URL or ``archive::member``), an `os.PathLike`, or a
                ``{"bytes", "path"}`` dict.
            row_name (`str`): names the row in errors, e.g. ``"id=train-0001"`` or ``"my/set [train] row 7"``.

        Raises:
            `VideoReferenceError`: the cell is empty, refused, or names nothing readable.
        """
        if isinstance(cell, dict):
            if cell.get("bytes"):
                return bytes(cell["bytes"])
            cell = cell.get("path")
        if isinstance(cell, bytes | bytearray | memoryview):
            if not cell:
                raise VideoReferenceError(row_name, "<0 bytes>", "empty_cell", "the video bytes are empty")
            return bytes(cell)
        if isinstance(cell, os.PathLike):
            cell = os.fspath(cell)
        if cell is None or cell == "":
            raise VideoReferenceError(row_name, "", "empty_cell", "the video cell is empty")
        if not isinstance(cell, str):
            raise VideoReferenceError(
                row_name, repr(cell)[:80], "unsupported_cell",
                f"a video cell must be bytes or a path/URL string, not {type(cell).__name__}",
            )  # fmt: skip
        try:
            if ARCHIVE_SEPARATOR in cell:
                archive, member = cell.split(ARCHIVE_SEPARATOR, 1)
                return self._member(self._file(archive, row_name, cell), member, row_name, cell)
            if self.archive is not None and not _is_url(cell) and not _is_absolute(cell):
                return self._member(self._file(self.archive, row_name, cell), cell, row_name, cell)
            return self._file(cell, row_name, cell)
        except (OSError, ValueError) as error:  # a path the system cannot even look up: too long, a NUL byte
            if isinstance(error, VideoReferenceError):
                raise
            cause = getattr(error, "strerror", None) or str(error)
            raise VideoReferenceError(
                row_name, cell, "unreadable_path", f"the path cannot be looked up ({cause}); fix the cell"
            ) from None

    def _file(self, reference: str, row_name: str, cell: str) -> Path:
        """A local file for a path or URL reference."""
        scheme = urllib.parse.urlsplit(reference).scheme.lower()
        if scheme in ("http", "https"):
            return self._download(reference, row_name, cell)
        if scheme == "file":
            reference = urllib.parse.unquote(urllib.parse.urlsplit(reference).path)
        elif "://" in reference:
            raise VideoReferenceError(
                row_name,
                cell,
                "unsupported_cell",
                f"the {scheme}:// scheme is not supported (only http(s) URLs)",
            )
        if _is_absolute(reference):
            return self._allowed(Path(reference), row_name, cell, "is an absolute path")
        base = self.video_root or self.dataset_dir
        if base is None and self.hub_dataset is not None:
            return self._from_hub(reference, row_name, cell)
        if base is None:
            raise VideoReferenceError(
                row_name, cell, "no_base_folder",
                "a relative path, and the dataset has no folder to resolve it against; set `video_root` to the "
                "folder holding the videos",
            )  # fmt: skip
        path = Path(os.path.normpath(Path(base) / reference))
        if not _within(path, Path(os.path.normpath(base))) or not _within_real(path, Path(base)):
            return self._allowed(path, row_name, cell, f"leads out of {base}")
        if not path.exists():
            return self._beside(base, reference, row_name, cell) or _existing(path, row_name, cell)
        return _existing(path, row_name, cell)

    def _allowed(self, path: Path, row_name: str, cell: str, what: str) -> Path:
        real = Path(os.path.realpath(path))
        if any(_within(real, Path(os.path.realpath(root))) for root in self.allowed_local_media_path):
            return _existing(path, row_name, cell)
        raise VideoReferenceError(
            row_name, cell, "local_path_not_allowed",
            f"{what}; a dataset's video cells may only name files inside its own folder, so it is not read. If you "
            f"trust this dataset, allow the folder holding its videos with `{ALLOW_OPTION}` (e.g. "
            f"--{ALLOW_OPTION.replace('_', '-')} {real.parent})",
        )  # fmt: skip

    def _from_hub(self, reference: str, row_name: str, cell: str) -> Path:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        member = PurePosixPath(reference)
        if ".." in member.parts:
            return self._allowed(
                Path(reference), row_name, cell, f"leads out of the repository {self.hub_dataset}"
            )
        try:
            path = hf_hub_download(
                self.hub_dataset, member.as_posix(), repo_type="dataset", revision=self.hub_revision
            )
        except EntryNotFoundError:
            raise VideoReferenceError(
                row_name, cell, "missing_file", f"no file {reference} in the Hub dataset {self.hub_dataset}"
            ) from None
        except Exception as error:  # offline, gated, network: each is a different class in huggingface_hub
            raise VideoReferenceError(
                row_name, cell, "download_failed", f"fetching {reference} from {self.hub_dataset}: {error}"
            ) from error
        return Path(path)

    def _cache(self, kind: str) -> Path:
        if self.cache_dir is not None:
            root = Path(self.cache_dir)
        else:
            from safevid.paths import safevid_home

            root = safevid_home() / "media"
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _download(self, url: str, row_name: str, cell: str) -> Path:
        suffix = PurePosixPath(urllib.parse.urlsplit(url).path).suffix.lower()[:8]
        target = self._cache("downloads") / f"{hashlib.sha256(url.encode()).hexdigest()[:40]}{suffix}"
        if target.is_file():
            return target
        fd, part = tempfile.mkstemp(dir=target.parent, suffix=".part")
        try:
            with open(fd, "wb") as out:
                download(
                    url,
                    out,
                    max_bytes=self.max_download_bytes,
                    deadline_s=self.download_deadline_s,
                    allow_private=self.allow_private_urls,
                )
            os.replace(part, target)
        except OSError as error:
            reason = "url_not_allowed" if isinstance(error, DownloadRefused) else "download_failed"
            raise VideoReferenceError(row_name, cell, reason, str(error)) from error
        finally:
            Path(part).unlink(missing_ok=True)
        return target

    def _member(self, archive: Path, member: str, row_name: str, cell: str) -> Path:
        from safevid.video.archives import UnsafeArchiveError, member_path

        try:
            if _is_absolute(member):
                raise UnsafeArchiveError("an absolute path")
            relative = member_path(member)
        except UnsafeArchiveError:
            raise VideoReferenceError(
                row_name, cell, "bad_archive_member", "an archive member must be a relative path without '..'"
            ) from None
        path = self._extracted(archive, row_name, cell).joinpath(*relative.parts)
        if not path.is_file():
            raise VideoReferenceError(
                row_name, cell, "missing_archive_member", f"{archive} has no file {relative}"
            )
        return path

    def _beside(self, base: str, reference: str, row_name: str, cell: str) -> Path | None:
        """A relative path missing from its folder, read from the archive published in its place: the cell
        ``videos/a.mp4`` (or ``./videos/a.mp4``) from ``videos.tar.gz`` (or ``.tar``, ``.zip``, ...) beside
        the ``videos`` folder, holding ``videos/a.mp4`` or ``a.mp4``."""
        from safevid.video.archives import archive_beside

        parts = PurePosixPath(os.path.normpath(reference.replace("\\", "/"))).parts
        if len(parts) < 2 or ".." in parts:
            return None
        archive = archive_beside(Path(base), parts[0])
        if archive is None:
            return None
        folder = self._extracted(archive, row_name, cell)
        for inside in (parts, parts[1:]):
            path = folder.joinpath(*inside)
            if path.is_file():
                return path
        raise VideoReferenceError(
            row_name, cell, "missing_archive_member",
            f"no file {Path(base) / reference}, and {archive} has no member {'/'.join(parts)} (nor "
            f"{'/'.join(parts[1:])})",
        )  # fmt: skip

    def _extracted(self, archive: Path, row_name: str, cell: str) -> Path:
        """The archive's extraction folder, extracting it first if no complete one exists (atomic)."""
        from safevid.video.archives import UnsafeArchiveError, extract_archive

        stat = archive.stat()
        key = hashlib.sha256(f"{os.path.realpath(archive)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        folder = self._cache("archives") / key.hexdigest()[:40]
        if folder.is_dir():
            return folder
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".extracting-"))
        try:
            extract_archive(archive, staging)  # refuses links, devices and members climbing out
            os.replace(staging, folder)
        except (UnsafeArchiveError, OSError) as error:
            if folder.is_dir():  # another process extracted it first
                return folder
            raise VideoReferenceError(
                row_name, cell, "bad_archive", f"cannot extract {archive} safely: {error}"
            ) from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder


def _is_url(reference: str) -> bool:
    return "://" in reference


def _is_absolute(reference: str) -> bool:
    return os.path.isabs(reference) or PurePosixPath(reference).is_absolute()


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _within_real(path: Path, base: Path) -> bool:
    """Whether ``path``, its links followed, stays inside ``base`` (or its Hub cache's blobs for a snapshot)."""
    real, real_base = Path(os.path.realpath(path)), Path(os.path.realpath(base))
    if _within(real, real_base):
        return True
    # A Hub snapshot's files are links into the repository cache's `blobs/` folder.
    for parent in real_base.parents:
        if parent.name == "snapshots":
            return _within(real, parent.parent / "blobs")
    return False


def _existing(path: Path, row_name: str, cell: str) -> Path:
    if not path.is_file():
        raise VideoReferenceError(row_name, cell, "missing_file", f"no file {path}")
    return path
