"""The build's frames: each video decoded once per sampling, then read back by every stage that needs it.

Ingest samples every video to check it decodes and stores the frames in a `safevid.video.frame_store.FrameStore`
under ``<work_dir>/frames`` (keyed by the video id, the SHA-256 of its bytes, and the sampling). Describe then
prepares its requests in a `safevid.video.pool.DecodePool` with `prepare_video`: the frames come from the store
(decoded again only when the entry is missing, e.g. a work folder from before this store), and are encoded for
the wire there too, off the main process. A local engine (no wire encoding) reads the entries in-process:
memory-mapped, they cost nothing to read. The target model's rejected replies read the same entries.

Disk: an entry holds the sampled frames uncompressed (``num_frames × height × width × 3`` bytes after the
``max_pixels`` budget). The folder is not needed once the build is published and may be deleted; a rerun
then decodes what it needs again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safevid.pipeline.context import BuildContext
from safevid.video.frame_store import FrameStore, frame_key

PREPARE_VIDEO = "safevid.pipeline.frames:prepare_video"


def frames_root(ctx: BuildContext) -> Path:
    """The build's frame store folder."""
    return ctx.config.work_path / "frames"


@dataclass(frozen=True)
class PreparedVideo:
    """A video ready for a request, made in a decode worker.

    Attributes:
        metadata (`dict`): `SampledVideo.metadata()` of its frames.
        parts (`list[dict]`, *optional*): the frames as wire content parts, when the backend takes them so.
        decoded (`bool`): whether the video was decoded for this (else read from the frame store).
        sampled (`SampledVideo`, *optional*): the frames themselves, when prepared in-process for a local engine.
    """

    metadata: dict[str, Any]
    parts: list[dict[str, Any]] | None
    decoded: bool
    sampled: Any = None


def stored_video(root: str | Path, video_id: str, path: str, sampling: dict[str, Any]) -> tuple[Any, bool]:
    """``(SampledVideo, decoded)``: the video's frames from the store, else decoded from ``path`` and stored.

    Raises:
        VideoDecodeError: the file no longer decodes.
    """
    import torch

    from safevid.video import SampledVideo, VideoSampling, sample_video

    settings = VideoSampling.from_dict(sampling)
    store, key = FrameStore(Path(root)), frame_key(video_id, settings)
    if store.has(key):
        frames, metadata = store.load(key)
        return SampledVideo.from_metadata(torch.from_numpy(frames), metadata), False
    sampled = sample_video(path, settings)
    store.put(key, sampled.frames, sampled.metadata())
    return sampled, True


def prepare_video(
    root: str, video_id: str, path: str, sampling: dict[str, Any], encoding: dict[str, str] | None
) -> PreparedVideo:
    """In a decode worker: the video's frames (`stored_video`), encoded with ``encoding`` if given
    (`Backend.media_encoding`), else only made sure to be in the store."""
    from safevid.backends.media import sampled_video_parts

    # The worker is already bounded by the pool's timeout: decode in it, not in a nested worker.
    sampled, decoded = stored_video(root, video_id, path, {**sampling, "timeout_s": None})
    parts = sampled_video_parts(sampled, **encoding) if encoding is not None else None
    return PreparedVideo(sampled.metadata(), parts, decoded)
