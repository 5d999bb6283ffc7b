"""`sample_video` and `probe_video`: the entry points of `safevid.video`."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from safevid.video.decoders import LARGE_FRAME_BYTES, Decoder, open_decoder
from safevid.video.errors import VideoDecodeError
from safevid.video.sampled import SampledVideo, VideoProbe
from safevid.video.sampling import (
    VideoSampling,
    index_centres,
    nearest_keyframes,
    segment_centres,
    target_size,
)
from safevid.video.sources import VideoSource, resolve_source


def sample_video(
    source: Any, sampling: VideoSampling | None = None, *, frames_fps: float | None = None
) -> SampledVideo:
    """Sample frames from a video at uniformly spaced timestamps, seeking to each one.

    The stream ``[start, end)`` is cut into ``n`` equal segments and the frame on screen at each
    segment's centre is decoded (see `VideoSampling` for ``n``), or with ``positions="keyframe"``
    the keyframe nearest each centre. Only the groups of pictures around those timestamps are
    decoded, never the whole stream, unless every frame is needed.

    Args:
        source:
            A path (``str``/``Path``), encoded ``bytes``, a ``datasets`` ``Video`` value (a
            ``torchcodec.decoders.VideoDecoder``, or the ``{"path": ..., "bytes": ...}`` dict of
            ``Video(decode=False)``), or decoded frames (list / NumPy array / tensor, uint8,
            (T, H, W, C) or (T, C, H, W)).
        sampling (`VideoSampling`, *optional*):
            How to sample; defaults to ``VideoSampling()`` (8 frames, torchcodec, exact seeks).
        frames_fps (`float`, *optional*):
            Frame rate of a frames `source` (ignored for files), defaults to 24.0, the rate
            transformers assumes for videos without metadata.

    Returns:
        `SampledVideo`: frames (uint8 (T, C, H, W)) and their metadata.

    Raises:
        VideoDecodeError: the source is missing, empty, not a video, corrupt, uses an
            unsupported codec, has fewer than ``sampling.min_frames`` frames, or took longer
            than ``sampling.timeout_s``. The message names the source and the cause.
    """
    sampling = sampling or VideoSampling()
    resolved = resolve_source(source, frames_fps)
    if _needs_worker(resolved, sampling):
        from safevid.video.worker import run_with_timeout

        assert sampling.timeout_s is not None
        return run_with_timeout("sample_resolved", (resolved, sampling), sampling.timeout_s, resolved.name)
    return sample_resolved(resolved, sampling)


def probe_video(source: Any, sampling: VideoSampling | None = None) -> VideoProbe:
    """Duration, frame rate, size (after rotation), frame count and codec, without decoding frames.

    Uses ``sampling``'s backend, seek mode and timeout (defaults: torchcodec, exact, none). With
    ``seek_mode="exact"`` the packet index is read (demuxing, no decoding) for exact counts. The
    PyAV backend decodes the first frame, where PyAV exposes the display rotation.

    Raises:
        VideoDecodeError: as `sample_video`.
    """
    sampling = sampling or VideoSampling()
    resolved = resolve_source(source)
    if _needs_worker(resolved, sampling):
        from safevid.video.worker import run_with_timeout

        assert sampling.timeout_s is not None
        return run_with_timeout("probe_resolved", (resolved, sampling), sampling.timeout_s, resolved.name)
    return probe_resolved(resolved, sampling)


def _needs_worker(source: VideoSource, sampling: VideoSampling) -> bool:
    if source.frames is not None:
        return False  # nothing to decode
    if sampling.timeout_s is None:
        if not source.regular_file:
            raise VideoDecodeError(
                source.name,
                "not a regular file (a pipe or device can block forever); set VideoSampling.timeout_s "
                "to read it in a worker process that is killed on timeout",
            )
        return False
    # An already-open decoder cannot cross a process boundary; it was opened by the caller
    # (datasets) already, so it is read in-process.
    return source.portable


def probe_resolved(source: VideoSource, sampling: VideoSampling) -> VideoProbe:
    """`probe_video` on a resolved source, in this process."""
    decoder = open_decoder(source, sampling.backend, sampling.seek_mode)
    try:
        info = decoder.info
        return VideoProbe(
            duration=info.duration,
            fps=info.fps,
            width=info.width,
            height=info.height,
            num_frames=info.num_frames,
            codec=info.codec,
            rotation=info.rotation,
            start=info.start,
        )
    finally:
        decoder.close()


def sample_resolved(source: VideoSource, sampling: VideoSampling) -> SampledVideo:
    """`sample_video` on a resolved source, in this process."""
    decoder = open_decoder(source, sampling.backend, sampling.seek_mode)
    try:
        return _sample(decoder, sampling)
    finally:
        decoder.close()


def _sample(decoder: Decoder, sampling: VideoSampling) -> SampledVideo:
    info = decoder.info
    requested = sampling.frame_count(info.duration)
    width, height = target_size(info.width, info.height, sampling.max_pixels)
    if (width, height) != (info.width, info.height):
        decoder = _Shrinking(decoder, height, width)
    fallback = None
    if requested >= info.num_frames:
        # Every frame is wanted: one sequential pass is cheaper than seeking to each.
        frames, times = decoder.all_frames()
        fallback = "all_frames" if requested > len(times) else None
    else:
        targets = segment_centres(info.start, info.end, requested)
        if sampling.positions == "keyframe":
            targets, fallback = _on_keyframes(decoder, targets)
        frames, times = decoder.frames_at(targets)
        if _repeats(times) and decoder.exact_indices:
            # Two timestamps fell on one frame (a long-lasting one of a variable frame rate, or a centre on its
            # neighbour's keyframe): the stream has enough frames, so take them at evenly spaced indices instead
            # (distinct by construction).
            frames, times = decoder.frames_at_indices(index_centres(info.num_frames, requested))
            fallback = "frame_indices"
        keep = [i for i, t in enumerate(times) if i == 0 or t > times[i - 1]]
        if len(keep) < len(times):
            # Still repeats (no exact frame times in approximate seek mode): keep each frame once.
            frames, times = frames[keep], [times[i] for i in keep]
            fallback = "dropped_duplicates"
    if len(times) < sampling.min_frames:
        raise VideoDecodeError(
            decoder.name,
            f"only {len(times)} distinct frame(s) available, fewer than min_frames={sampling.min_frames}",
        )
    last = info.num_frames - 1
    return SampledVideo(
        frames=frames,
        timestamps=times,
        indices=[min(last, max(0, round((t - info.start) * info.fps))) for t in times],
        source_fps=info.fps,
        duration=info.duration,
        width=info.width,
        height=info.height,
        num_source_frames=info.num_frames,
        backend=decoder.backend,
        codec=info.codec,
        rotation=info.rotation,
        requested_frames=requested,
        fallback=fallback,
        sampling=sampling,
        source=decoder.name,
    )


def _on_keyframes(decoder: Decoder, centres: list[float]) -> tuple[list[float], str | None]:
    """The keyframe nearest each centre (see `nearest_keyframes`), the centre itself where none is left."""
    keyframes = decoder.keyframe_times()
    if keyframes is None:  # every frame costs the same (decoded frames): the centres are as cheap as any
        return centres, None
    info = decoder.info
    landed = nearest_keyframes(centres, [k for k in keyframes if info.start <= k < info.end])
    targets = [centre if key is None else key for centre, key in zip(centres, landed, strict=True)]
    return targets, "exact_positions" if None in landed else None


def _repeats(times: list[float]) -> bool:
    return any(t <= previous for previous, t in pairwise(times))


class _Shrinking:
    """A decoder whose frames come out resized to (height, width), read a few at a time so that no more than
    `LARGE_FRAME_BYTES` of full-size frames (one frame, if larger) are ever held: the pixel budget bounds memory, not only the output.

    One resize after decoding, identical for every backend and input type (torchvision's antialiased resize, per
    frame, so reading in pieces changes no pixel), so the pixel budget never makes two backends disagree.
    """

    def __init__(self, decoder: Decoder, height: int, width: int) -> None:
        self.decoder, self.height, self.width = decoder, height, width
        self.name, self.backend, self.info = decoder.name, decoder.backend, decoder.info
        self.exact_indices = decoder.exact_indices
        self.batch = max(1, LARGE_FRAME_BYTES // (3 * self.info.width * self.info.height))

    def frames_at(self, timestamps: list[float]) -> tuple[Any, list[float]]:
        return self._in_pieces(self.decoder.frames_at, timestamps)

    def frames_at_indices(self, indices: list[int]) -> tuple[Any, list[float]]:
        return self._in_pieces(self.decoder.frames_at_indices, indices)

    def all_frames(self) -> tuple[Any, list[float]]:
        if self.exact_indices and self.info.num_frames > self.batch:
            return self.frames_at_indices(list(range(self.info.num_frames)))
        frames, times = self.decoder.all_frames()
        return self._resize(frames), times

    def keyframe_times(self) -> list[float] | None:
        return self.decoder.keyframe_times()

    def close(self) -> None:
        self.decoder.close()

    def _in_pieces(self, read: Any, positions: list[Any]) -> tuple[Any, list[float]]:
        import torch

        pieces = []
        for i in range(0, len(positions), self.batch):
            frames, times = read(positions[i : i + self.batch])
            pieces.append((self._resize(frames), times))  # before the next piece is decoded...
            del frames  # ...and without this piece's full-size frames still held while it is
        return torch.cat([frames for frames, _ in pieces]), [t for _, times in pieces for t in times]

    def _resize(self, frames: Any) -> Any:
        from torchvision.transforms.v2 import functional

        return functional.resize(frames, [self.height, self.width], antialias=True)
