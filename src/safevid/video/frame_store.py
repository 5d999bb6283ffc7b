"""`FrameStore`: decoded frames on disk, one entry per (video content, sampling), shared by every row and rank.

A video is decoded once per sampling and its frames reused by whoever needs them next: the data build (ingest
samples each video, describe and the target-model rejected replies read the frames back; `<work_dir>/frames`),
training (about ten preference pairs per video: the prepared rows hold only an entry's key (`frame_key`), and
the collator reads the frames by key; `<cache_dir>/frames`) and the evaluation harness (several prompts per video,
and every model evaluated after the first, read the frames back; `frames_dir`, by default training's store).
`stored_video` is the read-or-decode-and-store step they share. Layout under `root`:

    <root>/<key[:2]>/<key>.npy    uint8 frames (T, C, H, W) in NumPy's `.npy` format, memory-mapped on read
    <root>/<key[:2]>/<key>.json   {"version", "format", "shape", "file_size", "metadata": {...}}

One format for every writer and reader (ingest, describe, the target model's replies, training, evaluation): the
metadata is `SampledVideo.metadata()` plus ``source_sha256``, the SHA-256 of the bytes the frames were decoded from.
`stored_video` is the one writer.

The key (`frame_key`) is a SHA-256 of the video's identity (the row's `video_id` when it is a content hash: the
SHA-256 of the video file, as a SafeVid build writes it; or else a hash of the embedded bytes, or a local file's
path, size and modification time) and of the effective `VideoSampling` (minus `timeout_s`, which never changes the
frames, and minus fields added since version 1 while they hold the value that gives the frames of before, so stores
written then keep their keys). The two-hex-character subfolders keep folders small at 30K videos.

Nothing is trusted: an identity that claims to be a content hash is checked against the bytes before frames are
stored under it (`VideoIdentityError` when they differ), and an entry is read under such an identity only if its
``source_sha256`` is that hash. So a dataset whose rows reuse another's `video_id` with other videos can never
put its frames under the other's key. An entry whose array does not match its metadata (frame count, size), or
written in an older format (training's ``{"sampled", "transformers"}`` entries, entries without ``source_sha256``),
reads as missing and is decoded again.

Writes are atomic: each file is written under a temporary name in its folder and renamed into place, the frames
first and the JSON last, so the JSON is the commit mark. An entry counts only when its JSON parses, has this
version and names the frames file's exact size, so a torn entry (killed run, full disk, a truncated copy) reads as
missing and is decoded again, never loaded. Concurrent writers of one key (ranks, `num_proc` workers) write the same
bytes; whichever rename lands last wins. A killed writer may leave a `.tmp` file behind, which is safe to delete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safevid.video.errors import VideoDecodeError

if TYPE_CHECKING:
    import numpy as np

    from safevid.video import SampledVideo, VideoSampling

# Part of every key: bump only when the frames a key names change (every store is then decoded again).
STORE_VERSION = 1
# Bump when an entry's layout changes: older entries then read as missing and are decoded again, under the same keys.
# Format 2: the one metadata layout (`SampledVideo.metadata()`) with the SHA-256 of the decoded bytes.
ENTRY_FORMAT = 2
# VideoSampling fields added since, with the value that samples as before they existed.
_ADDED_SINCE_VERSION = {"positions": "exact"}
_KEY = re.compile(r"^[0-9A-Za-z_-]{4,128}$")
_CONTENT_ID = re.compile(r"^[0-9a-f]{64}$")


def frame_key(video_identity: str, sampling: VideoSampling) -> str:
    """The store key of one video sampled one way.

    Args:
        video_identity (`str`): what identifies the video's content (see `video_identity`).
        sampling (`VideoSampling`): the effective sampling (the row's, with the run's overrides).
    """
    settings = sampling.to_dict()
    settings.pop("timeout_s", None)  # a time limit on decoding never changes which frames come out
    for name, before in _ADDED_SINCE_VERSION.items():
        if settings.get(name) == before:
            del settings[name]
    blob = json.dumps(
        {"version": STORE_VERSION, "video": video_identity, "sampling": settings}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def is_content_id(video_id: Any) -> bool:
    """Whether a row's `video_id` names its video's content (a SHA-256 hex digest, what a SafeVid build writes), so it
    may key a store shared across datasets. Other ids (``vid_001``) are unique only within their own dataset: two
    benchmarks could both have a ``vid_001``, so such a row is identified by its video instead (`video_identity`).
    """
    return isinstance(video_id, str) and _CONTENT_ID.match(video_id) is not None


class VideoIdentityError(VideoDecodeError):
    """A `video_id` that claims to be its video's SHA-256 (64 hex digits) names other bytes."""


def content_sha256(source: Any) -> str | None:
    """SHA-256 of a video's bytes (embedded bytes, or a local file read in 1 MiB chunks); `None` for a source that
    is neither (a URL only the decoder resolves)."""
    if isinstance(source, bytes | bytearray):
        return hashlib.sha256(source).hexdigest()
    if isinstance(source, str | os.PathLike) and Path(source).is_file():
        return file_sha256(source)
    return None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks: a video's id in a SafeVid build."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def video_identity(video: Any) -> str:
    """Identity of a row's video when it has no `video_id`: the SHA-256 of its bytes, else its path.

    The hash of the bytes is what a SafeVid build stores as `video_id`, so both name the same entry. A local file is
    identified by its resolved path, size and modification time (hashing every file at every run would read them all).

    Raises:
        `TypeError`: the value is neither bytes, a path, nor a `{"bytes", "path"}` dict.
    """
    if isinstance(video, dict):
        if video.get("bytes"):
            return hashlib.sha256(video["bytes"]).hexdigest()
        video = video.get("path")
    if isinstance(video, bytes | bytearray):
        return hashlib.sha256(video).hexdigest()
    if isinstance(video, str | os.PathLike) and str(video):
        path = Path(video)
        if path.is_file():
            stat = path.stat()
            return f"path:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        return f"path:{video}"  # a URL or a path that only the decoder can resolve
    raise TypeError(f"cannot identify a video given as {type(video).__name__}")


@dataclass(frozen=True)
class FrameStore:
    """Decoded frames keyed by `frame_key`, one `.npy` plus one `.json` per entry (see the module docstring).

    Args:
        root (`str` or `Path`): the store's folder (created on the first write).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def paths(self, key: str) -> tuple[Path, Path]:
        """`(frames .npy, metadata .json)` of `key`."""
        if not _KEY.match(key):
            raise ValueError(f"Invalid frame store key {key!r}: use 4 to 128 letters, digits, '-' or '_'.")
        folder = self.root / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def metadata(self, key: str) -> dict[str, Any] | None:
        """The metadata of a complete entry, or `None` when it is missing, torn, of another version or format, or
        its metadata does not describe its array."""
        frames_path, json_path = self.paths(key)
        try:
            record = json.loads(json_path.read_text())
            complete = (
                record.get("version") == STORE_VERSION
                and record.get("format") == ENTRY_FORMAT
                and frames_path.stat().st_size == record["file_size"]
                and _mismatch(record["shape"], record["metadata"]) is None
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return record["metadata"] if complete else None

    def has(self, key: str) -> bool:
        """Whether `key` has a complete entry."""
        return self.metadata(key) is not None

    def put(self, key: str, frames: Any, metadata: dict[str, Any]) -> None:
        """Store uint8 `frames` (T, C, H, W) and their JSON-able `metadata` under `key`, atomically."""
        import numpy as np

        array = np.ascontiguousarray(frames.numpy() if hasattr(frames, "numpy") else frames)
        if array.dtype != np.uint8 or array.ndim != 4:
            raise ValueError(
                f"Frame store entry {key}: expected uint8 frames (T, C, H, W), got {array.dtype} {array.shape}."
            )
        problem = _mismatch(list(array.shape), metadata)
        if problem is not None:
            raise ValueError(f"Frame store entry {key}: {problem}.")
        frames_path, json_path = self.paths(key)
        frames_path.parent.mkdir(parents=True, exist_ok=True)
        size = _write_atomically(frames_path, lambda f: np.save(f, array, allow_pickle=False))
        record = {
            "version": STORE_VERSION,
            "format": ENTRY_FORMAT,
            "shape": list(array.shape),
            "file_size": size,
            "metadata": metadata,
        }
        _write_atomically(json_path, lambda f: f.write(json.dumps(record).encode()))

    def load(self, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        """The frames of `key`, memory-mapped copy-on-write (read lazily, never written back), and its metadata.

        Raises:
            `ValueError`: the entry is missing or damaged; the message names it and the fix.
        """
        import numpy as np

        frames_path = self.paths(key)[0]
        metadata = self.metadata(key)
        problem = "is missing or incomplete"
        if metadata is not None:
            try:
                frames = np.load(frames_path, mmap_mode="c", allow_pickle=False)
            except (OSError, ValueError) as error:
                problem = f"cannot be read ({error})"
            else:
                if frames.dtype != np.uint8 or frames.ndim != 4:
                    problem = f"holds {frames.dtype} {frames.shape}, not uint8 (T, C, H, W)"
                else:
                    problem = _mismatch(list(frames.shape), metadata)
                    if problem is None:
                        return frames, metadata
        raise ValueError(
            f"Frame store entry {frames_path} {problem}. Rerun the data preparation (`prepare_preference_dataset`, "
            "or start the training again): it decodes missing and damaged entries again."
        )

    def keys(self) -> list[str]:
        """Keys of the entries on disk (complete or not), sorted."""
        return sorted(path.stem for path in self.root.glob("*/*.json"))


def stored_video(
    root: str | Path, identity: str, source: str | Path | bytes, sampling: dict[str, Any]
) -> tuple[SampledVideo, bool]:
    """``(SampledVideo, decoded)``: a video's frames from the store, else decoded from ``source`` and stored.

    The next reader of the entry (another row, stage, run or model) then decodes nothing.

    Args:
        root (`str` or `Path`): the store's folder.
        identity (`str`): what identifies the video's content: a row's `video_id`, else `video_identity`.
        source (`str`, `Path` or `bytes`): the video to decode when the store has no entry.
        sampling (`dict`): the effective `VideoSampling`, as `VideoSampling.to_dict` writes it.

    Raises:
        VideoDecodeError: the entry is missing and the video does not decode.
        VideoIdentityError: ``identity`` claims to be a content hash (`is_content_id`) that the video's bytes do not
            have.
    """
    import torch

    from safevid.video.api import sample_video
    from safevid.video.sampled import SampledVideo
    from safevid.video.sampling import VideoSampling

    settings = VideoSampling.from_dict(sampling)
    store, key = FrameStore(Path(root)), frame_key(identity, settings)
    claimed = identity if is_content_id(identity) else None
    found = store.metadata(key)
    if found is not None and claimed in (None, found.get("source_sha256")):
        try:
            frames, metadata = store.load(key)
        except ValueError:
            pass  # damaged since it was checked: decoded again below
        else:
            return SampledVideo.from_metadata(torch.from_numpy(frames), metadata), False
    digest = content_sha256(source)
    if claimed is not None and digest != claimed:
        name = f"<bytes: {len(source)}>" if isinstance(source, bytes | bytearray) else str(source)
        raise VideoIdentityError(
            name,
            f"its video_id {claimed} claims to be the SHA-256 of the video, but "
            + (f"the video's is {digest}" if digest else "the video is not a local file or bytes to check it")
            + ": set the row's video_id to the video's SHA-256, or to an id that is not 64 hex digits",
        )
    sampled = sample_video(source, settings)
    store.put(key, sampled.frames, {**sampled.metadata(), "source_sha256": digest})
    return sampled, True


def _mismatch(shape: list[int], metadata: dict[str, Any]) -> str | None:
    """What in ``metadata`` (`SampledVideo.metadata()`) contradicts a (T, C, H, W) ``shape``, or `None`."""
    try:
        described = [metadata["num_frames"], 3, metadata["frame_height"], metadata["frame_width"]]
        timestamps = len(metadata["timestamps"])
    except (KeyError, TypeError) as error:
        return f"the metadata lacks {error} (not `SampledVideo.metadata()`)"
    if list(shape) != described or timestamps != shape[0]:
        return (
            f"the frames are {list(shape)} but the metadata describes {described} with "
            f"{timestamps} timestamps"
        )
    return None


def _write_atomically(path: Path, write: Any) -> int:
    """Write `path` through `write(file)` under a temporary name, then rename it into place; return its size."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temporary.open("wb") as file:
            write(file)
        size = temporary.stat().st_size
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return size
