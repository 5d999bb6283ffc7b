"""Video archives (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.zip``), unpacked safely.

Datasets often publish their videos in one archive beside the data file (align-anything's
``text-video-to-text/videos.tar.gz``, Video-SafetyBench's ``video.tar.gz``). `extract_archive` writes the
archive's regular files, member by member, into a folder the caller owns (safevid's media cache): a member
that is a link (symbolic or hard), a device or a FIFO, or whose name climbs out with ``..``, refuses the whole
archive before anything of it is used; a leading ``/`` is dropped, as tarfile's ``data`` filter does.
Nothing of the archive is written anywhere else.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")


class UnsafeArchiveError(ValueError):
    """An archive with a member safevid will not unpack (named in the message), or one it cannot read."""


def is_archive(name: str) -> bool:
    """Whether ``name`` ends like an archive `extract_archive` reads."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_beside(folder: Path, stem: str) -> Path | None:
    """The archive ``<stem>.tar.gz`` (or another of `ARCHIVE_SUFFIXES`) in ``folder``, if there is one."""
    for suffix in ARCHIVE_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def member_path(name: str) -> PurePosixPath:
    """A member name as the relative path it is unpacked to (``./a/b`` → ``a/b``, ``/a`` → ``a``).

    Raises:
        UnsafeArchiveError: the name is empty or climbs out with ``..``.
    """
    path = PurePosixPath(name.replace("\\", "/").lstrip("/"))
    if not path.parts or ".." in path.parts:
        raise UnsafeArchiveError(f"member {name!r} climbs out of the archive with '..' (or is empty)")
    return path


def extract_archive(archive: Path, target: Path) -> int:
    """Unpack every regular file of ``archive`` into ``target`` (which must exist); how many.

    Raises:
        UnsafeArchiveError: a member is a link, a device or a FIFO, or climbs out with ``..`` (the member is
            named); or the file is not an archive of a known kind. ``target`` may then hold part of the archive:
            the caller discards it.
    """
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, target)
    try:
        with tarfile.open(archive) as tar:
            count = 0
            for member in tar:  # streamed: a compressed tar is read once, front to back
                if member.isdir():
                    continue
                if not member.isfile():
                    kind = "a link" if member.issym() or member.islnk() else "not a regular file"
                    raise UnsafeArchiveError(f"member {member.name!r} is {kind}")
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has a stream
                _write(source, target, member_path(member.name))
                count += 1
            return count
    except tarfile.TarError as error:
        raise UnsafeArchiveError(f"not a readable tar or zip archive ({error})") from error


def _extract_zip(archive: Path, target: Path) -> int:
    count = 0
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            if info.is_dir():
                continue
            # The Unix file type, where the archiver stored one (many store permissions only, or nothing).
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind not in (0, stat.S_IFREG):
                what = "a link" if kind == stat.S_IFLNK else "not a regular file"
                raise UnsafeArchiveError(f"member {info.filename!r} is {what}")
            with bundle.open(info) as source:
                _write(source, target, member_path(info.filename))
            count += 1
    return count


def _write(source: BinaryIO, target: Path, relative: PurePosixPath) -> None:
    path = target.joinpath(*relative.parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as out:  # "x": a repeated member name is not allowed to overwrite the first
        shutil.copyfileobj(source, out, 1 << 20)
