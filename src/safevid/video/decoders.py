"""Decoder backends: torchcodec, PyAV, and already-decoded frames, behind one small interface.

Each backend opens a `VideoSource`, reports a `StreamInfo` (sizes after rotation), and returns
the frames *played at* given timestamps (the last frame whose presentation time is at or before
the timestamp) by seeking to the keyframe before each one, never by decoding the whole stream.
Both file backends apply the container's display rotation the same way (counter-clockwise, as
FFmpeg's display matrix says), convert to RGB with FFmpeg's swscale, and return uint8
(T, C, H, W) tensors, so the same file gives the same frames from either. They agree on the stream's
end too: the end of the last frame as the container times it (torchcodec's own end, from decoded frame
durations, can fall short on variable-frame-rate MP4). Both take their keyframe times from the same place, the
packet headers as PyAV demuxes them, so keyframe positions (`VideoSampling.positions`) agree too. A decode
error after the file opened names the time it happened at and its cause.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from safevid.video.errors import VideoDecodeError
from safevid.video.sources import VideoSource

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class StreamInfo:
    """What a backend knows about the video stream before decoding any frame.

    Attributes:
        codec (`str`): FFmpeg codec name (``"h264"``...), ``"raw"`` for frame arrays.
        width (`int`), height (`int`): frame size after display rotation.
        rotation (`int`): display rotation applied, degrees counter-clockwise.
        start (`float`), end (`float`): seconds; first frame's time and last frame's end.
        num_frames (`int`): frames in the stream.
        fps (`float`): average frame rate (``num_frames / duration`` after an exact scan).
    """

    codec: str
    width: int
    height: int
    rotation: int
    start: float
    end: float
    num_frames: int
    fps: float

    @property
    def duration(self) -> float:
        return self.end - self.start


class Decoder(Protocol):
    """An open video, ready to return frames."""

    name: str
    backend: str
    info: StreamInfo
    exact_indices: bool  # frames_at_indices gives exactly the i-th frame (exact seek mode)

    def frames_at(self, timestamps: list[float]) -> tuple[torch.Tensor, list[float]]:
        """Frames played at the ascending `timestamps` (uint8 (T, C, H, W)) and their times."""
        ...

    def frames_at_indices(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        """The frames of ascending presentation-order `indices` and their times."""
        ...

    def all_frames(self) -> tuple[torch.Tensor, list[float]]:
        """Every frame and its time."""
        ...

    def keyframe_times(self) -> list[float] | None:
        """Presentation times of the keyframes, ascending: ``[]`` if unknown, `None` if every frame is one
        at no seek cost (already-decoded frames)."""
        ...

    def close(self) -> None: ...


def open_decoder(source: VideoSource, backend: str, seek_mode: str) -> Decoder:
    """Open `source` with `backend`; any failure becomes a `VideoDecodeError` naming the cause."""
    if source.frames is not None:
        return FrameArrayDecoder(source)
    if source.decoder is not None:
        if backend != "torchcodec":
            raise VideoDecodeError(
                source.name,
                f"an open torchcodec VideoDecoder cannot be read with backend={backend!r}; pass its "
                "path or bytes instead",
            )
        return TorchCodecDecoder(source, seek_mode)
    if backend == "torchcodec":
        return TorchCodecDecoder(source, seek_mode)
    if backend == "pyav":
        return PyAVDecoder(source, seek_mode)
    raise ValueError(f"Unknown backend {backend!r}.")


DECODE_THREADS_ENV = "SAFEVID_DECODE_THREADS"
LARGE_FRAME_BYTES = 64 << 20
"""An RGB frame larger than this (about 4600x4600) is decoded with care for memory: on one FFmpeg thread, and
resized as it is read (`safevid.video.api`), so an 8192x8192 clip costs what its pixel budget does."""


def ffmpeg_threads() -> int:
    """FFmpeg threads per torchcodec decoder: ``$SAFEVID_DECODE_THREADS``, else 0 (FFmpeg's choice: every core).

    One video decoded alone is faster on every core (1.5x on two cores, seeks included; docs/benchmarks.md). Where
    videos are decoded side by side, one process per core, each should take one thread instead: the decode pool's
    workers set the variable to their share of the cores (`safevid.video.pool.DecodePool`), and so can a user
    running several decoding processes of their own (``dataset_num_proc``).
    """
    value = os.environ.get(DECODE_THREADS_ENV, "0")
    try:
        threads = int(value)
    except ValueError:
        raise ValueError(
            f"{DECODE_THREADS_ENV} must be a whole number of threads (0: FFmpeg decides), got {value!r}"
        ) from None
    if threads < 0:
        raise ValueError(f"{DECODE_THREADS_ENV} must be 0 or more, got {threads}")
    return threads


class TorchCodecDecoder:
    """torchcodec's `VideoDecoder` (system FFmpeg); batched, seeking `get_frames_played_at`."""

    backend = "torchcodec"

    def __init__(self, source: VideoSource, seek_mode: str):
        self.name = source.name
        self._source = source
        if source.decoder is not None:
            self._decoder = source.decoder
        else:
            self._decoder = self._open(source, seek_mode, ffmpeg_threads())
            meta = self._decoder.metadata
            if ffmpeg_threads() != 1 and 3 * (meta.width or 0) * (meta.height or 0) > LARGE_FRAME_BYTES:
                # Frame threading holds frames in flight per thread: 100 MB each at 8192x8192. One thread keeps a
                # huge video's decoding within its pixel budget's memory (the frames are bit-identical).
                self._decoder = self._open(source, seek_mode, 1)
        meta = self._decoder.metadata
        num_frames = meta.num_frames or 0
        start = float(meta.begin_stream_seconds or 0.0)
        end = float(meta.end_stream_seconds or 0.0)
        if num_frames < 1 or end <= start or not meta.width or not meta.height:
            raise VideoDecodeError(self.name, "the video stream has no frames")
        self.exact_indices = seek_mode == "exact" and source.decoder is None
        self._seek_mode = seek_mode
        # torchcodec refuses times at or past its own end; later times show its last frame.
        self._last_time = math.nextafter(end, -math.inf)
        nominal = float(meta.average_fps_from_header or 0)
        if self.exact_indices and round(nominal * (end - start)) != num_frames:
            # Variable frame rate (the nominal rate does not count the frames): torchcodec timed the last
            # frame by the nominal rate; the container's own timing agrees with PyAV's (~10 ms to read).
            end = max(end, container_end(source, end) or end)
        self.info = StreamInfo(
            codec=meta.codec or "unknown",
            width=int(meta.width),
            height=int(meta.height),
            rotation=int(meta.rotation or 0),
            start=start,
            end=end,
            num_frames=int(num_frames),
            # After an exact scan, the average rate over the same span as PyAV's.
            fps=num_frames / (end - start)
            if self.exact_indices
            else float(meta.average_fps or num_frames / (end - start)),
        )

    def _open(self, source: VideoSource, seek_mode: str, threads: int) -> Any:
        from torchcodec.decoders import VideoDecoder

        try:
            return VideoDecoder(
                source.path if source.path is not None else source.data,
                seek_mode=seek_mode,
                num_ffmpeg_threads=threads,
            )
        except Exception as error:
            raise VideoDecodeError(self.name, diagnose(source, error)) from None

    def frames_at(self, timestamps: list[float]) -> tuple[torch.Tensor, list[float]]:
        timestamps = [min(t, self._last_time) for t in timestamps]
        try:
            batch = self._decoder.get_frames_played_at(timestamps)
        except Exception as error:
            raise self._located(error, timestamps) from None
        return batch.data, [float(t) for t in batch.pts_seconds.tolist()]

    def frames_at_indices(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        try:
            batch = self._decoder.get_frames_at(indices)
        except Exception as error:
            raise VideoDecodeError(self.name, clean_cause(error, mid_stream=True)) from None
        return batch.data, [float(t) for t in batch.pts_seconds.tolist()]

    def all_frames(self) -> tuple[torch.Tensor, list[float]]:
        try:
            batch = self._decoder.get_frames_played_in_range(self.info.start, self._last_time)
        except Exception as error:
            step = self.info.duration / self.info.num_frames
            probes = [self.info.start + i * step for i in range(self.info.num_frames)]
            raise self._located(error, probes) from None
        return batch.data, [float(t) for t in batch.pts_seconds.tolist()]

    def keyframe_times(self) -> list[float]:
        # torchcodec 0.17 has keyframe *indices* only (the private `VideoDecoder._get_key_frame_indices()`, in
        # exact mode), and their times would take a decode. PyAV reads the times from the packet headers (one
        # demux, no decoding; its cost is in docs/benchmarks.md) and gives the PyAV backend the same keyframes.
        source = self._source
        if source.decoder is not None or not source.regular_file:
            return []  # nothing to reopen: an open decoder with no file, or a pipe, readable once
        try:
            import av

            with av.open(source.path if source.path is not None else io.BytesIO(source.data)) as container:
                stream = container.streams.video[0]
                return scan_keyframes(container.demux(stream), stream)
        except Exception:
            # Keyframes only speed sampling up: without them samples stay exact, and `fallback` says so.
            return []

    def _located(self, error: BaseException, timestamps: list[float]) -> VideoDecodeError:
        """The error of a batched decode, at the first time that fails alone (found on the error path only)."""
        for t in timestamps:
            try:
                self._decoder.get_frames_played_at([min(t, self._last_time)])
            except Exception as failure:
                return VideoDecodeError(self.name, f"at {t:.3f} s: {self._cause(failure)}")
        return VideoDecodeError(self.name, self._cause(error))

    def _cause(self, error: BaseException) -> str:
        cause = clean_cause(error, mid_stream=True)
        if self._seek_mode == "approximate" and "Invalid frame index" in cause:
            # torchcodec maps times to frame indices by the header's frame rate, which a variable-frame-rate file
            # does not keep (torchcodec 0.17): the index runs past the stream.
            cause += " (approximate seeks trust the header's frame rate, which this file does not keep: use "
            cause += "seek_mode='exact', or backend='pyav')"
        return cause

    def close(self) -> None:
        # torchcodec frees its FFmpeg context when the decoder is garbage-collected.
        self._decoder = None


class PyAVDecoder:
    """PyAV (its own bundled FFmpeg): seek to the keyframe before each timestamp, decode forward.

    In ``"exact"`` mode the packet index is read first (demuxing only), which gives the exact
    frame count, end time and keyframe positions, so consecutive timestamps inside one group
    of pictures are decoded without a second seek.
    """

    backend = "pyav"

    def __init__(self, source: VideoSource, seek_mode: str):
        import av

        self.name = source.name
        try:
            self._container = av.open(source.path if source.path is not None else io.BytesIO(source.data))
        except Exception as error:
            raise VideoDecodeError(self.name, clean_cause(error)) from None
        try:
            self._open_stream(av, seek_mode)
        except VideoDecodeError:
            self._container.close()
            raise
        except Exception as error:
            self._container.close()
            raise VideoDecodeError(self.name, clean_cause(error)) from None

    def _open_stream(self, av: Any, seek_mode: str) -> None:
        if not self._container.streams.video:
            raise VideoDecodeError(self.name, _no_video_cause(self._container))
        stream = self._container.streams.video[0]
        if stream.codec_context is None:
            raise VideoDecodeError(
                self.name,
                f"unsupported codec: FFmpeg {av.ffmpeg_version_info} has no decoder for video stream {stream.index}",
            )
        stream.thread_type = (
            "SLICE"  # PyAV's frame threading delays each seek (slower than SLICE, seeks or not)
        )
        if 3 * stream.codec_context.width * stream.codec_context.height > LARGE_FRAME_BYTES:
            stream.thread_count = 1  # as torchcodec's: each thread holds buffers of the frame's size
        self._stream, self._time_base = stream, stream.time_base
        self._keyframes: list[float] | None = None
        self._scanned_keyframes: list[float] | None = None  # the packets' own presentation times, once read
        self._frame_times: list[float] | None = None
        self.exact_indices = seek_mode == "exact"
        if seek_mode == "exact":
            start, end, num_frames = self._scan()
        else:
            start, end, num_frames = self._header_timing()
            self._keyframes = self._index_keyframes()
        # The display rotation lives in frame side data in PyAV; the first frame carries it.
        first = self._decode_first(start)
        rotation = int(first.rotation or 0)
        width, height = (first.height, first.width) if rotation % 180 else (first.width, first.height)
        if num_frames < 1 or end <= start:
            raise VideoDecodeError(self.name, "the video stream has no frames")
        self.info = StreamInfo(
            codec=stream.codec_context.name,
            width=width,
            height=height,
            rotation=rotation,
            start=start,
            end=end,
            num_frames=num_frames,
            fps=num_frames / (end - start)
            if seek_mode == "exact"
            else float(stream.average_rate or stream.guessed_rate or num_frames / (end - start)),
        )
        self._reset()

    def _scan(self) -> tuple[float, float, int]:
        pts_list: list[int] = []
        end: int | None = (
            None  # not 0: times may be negative (an MPEG-TS whose 33-bit clock wrapped is unwrapped so)
        )
        keyframes: list[float] = []
        for packet in self._container.demux(self._stream):
            if packet.pts is None:  # the demuxer's final flush packet
                continue
            pts_list.append(packet.pts)
            packet_end = packet.pts + (packet.duration or 0)
            end = packet_end if end is None else max(end, packet_end)
            if packet.is_keyframe:
                keyframes.append(float(packet.pts * self._time_base))
        if not pts_list:
            raise VideoDecodeError(self.name, "the video stream has no frames")
        self._keyframes = self._scanned_keyframes = sorted(keyframes)
        self._frame_times = [float(pts * self._time_base) for pts in sorted(pts_list)]
        start = min(pts_list)
        assert end is not None
        return float(start * self._time_base), float(max(end, max(pts_list)) * self._time_base), len(pts_list)

    def _header_timing(self) -> tuple[float, float, int]:
        stream = self._stream
        start = float(stream.start_time * self._time_base) if stream.start_time is not None else 0.0
        if stream.duration:
            duration = float(stream.duration * self._time_base)
        elif self._container.duration:
            duration = self._container.duration / 1_000_000
        else:
            raise VideoDecodeError(self.name, "the container header has no duration; use seek_mode='exact'")
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        num_frames = stream.frames or round(duration * rate)
        return start, start + duration, num_frames

    def _index_keyframes(self) -> list[float] | None:
        # MP4 sample tables and Matroska cues list keyframes without a scan, good enough to aim seeks at: MP4's
        # are decode times (before the presentation times with B-frames), Matroska's load on the first seek.
        entries = [e for e in self._stream.index_entries if e.flags & 1]
        return sorted(float(e.timestamp * self._time_base) for e in entries) or None

    def keyframe_times(self) -> list[float]:
        if self._scanned_keyframes is None:
            # Approximate mode read the index entries only (see `_index_keyframes`): demux the packets once.
            try:
                start = int(self.info.start / self._time_base)
                self._container.seek(start, stream=self._stream, backward=True)
                self._scanned_keyframes = scan_keyframes(self._container.demux(self._stream), self._stream)
            except Exception:
                self._scanned_keyframes = []  # as for torchcodec: samples stay exact, and `fallback` says so
            finally:
                self._reset()  # the next read seeks afresh
            self._keyframes = self._scanned_keyframes or self._keyframes  # better seek targets, too
        return list(self._scanned_keyframes)

    def _decode_first(self, start: float) -> Any:
        # From the stream's start, not 0 s: unwrapped MPEG-TS times may all be negative.
        self._seek(start if self._keyframes is None else self._keyframes[0])
        for frame in self._frames:
            return frame
        raise VideoDecodeError(self.name, "no frame could be decoded")

    def _reset(self) -> None:
        self._frames: Any = None
        self._last: Any = None  # last frame returned by the iterator (time <= last target)
        self._ahead: Any = None  # a frame read past the last target, kept for the next one

    def _seek(self, seconds: float) -> None:
        if self._keyframes:
            # FFmpeg seeks by decode time: with reordered frames the keyframe it lands on can be shown after
            # `seconds`. Aim at the last keyframe *shown* at or before it (the one torchcodec starts from).
            seconds = max((k for k in self._keyframes if k <= seconds + 1e-9), default=seconds)
        self._container.seek(int(seconds / self._time_base), stream=self._stream, backward=True)
        self._frames = self._container.decode(self._stream)
        self._last = self._ahead = None

    def _time(self, frame: Any) -> float:
        if frame.pts is None:
            raise VideoDecodeError(self.name, "a decoded frame has no timestamp")
        return float(frame.pts * self._time_base)

    def _must_seek(self, t: float) -> bool:
        if self._frames is None:
            return True
        position = self._ahead if self._ahead is not None else self._last
        if position is None:
            return True
        if t < self._time(position):
            return True
        if self._keyframes is None:
            return True
        # Seek only when a keyframe lies between here and the target: decoding forward to it
        # would cost more than jumping.
        return any(self._time(position) < k <= t for k in self._keyframes)

    def frames_at(self, timestamps: list[float]) -> tuple[torch.Tensor, list[float]]:
        picked: list[Any] = []
        t = timestamps[0] if timestamps else 0.0
        try:
            for t in timestamps:
                if self._must_seek(t):
                    self._seek(t)
                picked.append(self._frame_played_at(t))
        except VideoDecodeError:
            raise
        except Exception as error:
            raise VideoDecodeError(
                self.name, f"at {t:.3f} s: {clean_cause(error, mid_stream=True)}"
            ) from None
        return self._to_tensor(picked), [self._time(f) for f in picked]

    def frames_at_indices(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        if self._frame_times is None:
            raise ValueError("frame indices need seek_mode='exact' (the scan gives every frame's time)")
        return self.frames_at([self._frame_times[i] for i in indices])

    def _frame_played_at(self, t: float) -> Any:
        candidate = self._last
        while True:
            frame = self._ahead if self._ahead is not None else next(self._frames, None)
            self._ahead = None
            if frame is None:
                break  # end of stream: the last frame stays on screen
            if self._time(frame) > t + 1e-9:
                self._ahead = frame
                break
            candidate = frame
            if self._time(frame) >= t - 1e-9:
                break  # shown exactly at t (a keyframe position): the next frame starts later, no need to decode it
        self._last = candidate
        chosen = candidate if candidate is not None else self._ahead
        if chosen is None:
            raise VideoDecodeError(self.name, f"no frame could be decoded at {t:.3f} s")
        return chosen

    def all_frames(self) -> tuple[torch.Tensor, list[float]]:
        frames: list[Any] = []
        try:
            self._seek(self.info.start)
            for frame in self._frames:
                frames.append(frame)
        except Exception as error:
            where = f"after {self._time(frames[-1]):.3f} s" if frames else f"at {self.info.start:.3f} s"
            raise VideoDecodeError(self.name, f"{where}: {clean_cause(error, mid_stream=True)}") from None
        finally:
            self._reset()
        frames.sort(key=self._time)
        return self._to_tensor(frames), [self._time(f) for f in frames]

    def _to_tensor(self, frames: list[Any]) -> torch.Tensor:
        import numpy as np
        import torch

        turns = (self.info.rotation // 90) % 4
        out: torch.Tensor | None = None
        for i, frame in enumerate(frames):
            # np.rot90 turns counter-clockwise, the display matrix's direction (as torchcodec does).
            rgb = torch.from_numpy(np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), k=turns)))
            if (
                out is None
            ):  # filled frame by frame: one RGB frame at a time beside the result, no stacked copy
                out = torch.empty((len(frames), 3, *rgb.shape[:2]), dtype=torch.uint8)
            out[i] = rgb.permute(2, 0, 1)
        return (
            out
            if out is not None
            else torch.empty((0, 3, self.info.height, self.info.width), dtype=torch.uint8)
        )

    def close(self) -> None:
        self._container.close()


class FrameArrayDecoder:
    """Already-decoded frames at a known rate: frame ``i`` is on screen during ``[i/fps, (i+1)/fps)``."""

    backend = "frames"
    exact_indices = True

    def __init__(self, source: VideoSource):
        self.name = source.name
        self._frames = source.frames
        count, _, height, width = self._frames.shape
        self.info = StreamInfo(
            codec="raw",
            width=int(width),
            height=int(height),
            rotation=0,
            start=0.0,
            end=count / source.frames_fps,
            num_frames=int(count),
            fps=source.frames_fps,
        )

    def frames_at(self, timestamps: list[float]) -> tuple[torch.Tensor, list[float]]:
        fps, last = self.info.fps, self.info.num_frames - 1
        indices = [min(last, max(0, int(t * fps + 1e-9))) for t in timestamps]
        return self._frames[indices], [i / fps for i in indices]

    def frames_at_indices(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        return self._frames[indices], [i / self.info.fps for i in indices]

    def all_frames(self) -> tuple[torch.Tensor, list[float]]:
        return self._frames, [i / self.info.fps for i in range(self.info.num_frames)]

    def keyframe_times(self) -> None:
        return None  # every frame is at hand: any position costs the same

    def close(self) -> None:
        self._frames = None


def scan_keyframes(packets: Any, stream: Any) -> list[float]:
    """Presentation times of the keyframe packets among `packets` (PyAV's, of `stream`), ascending, in seconds.

    Reads packet headers only (no decoding). The times are PyAV's ``pts * time_base``, which is also how
    torchcodec converts them (both round the same rational once), so a keyframe time lands exactly on its frame.
    """
    time_base = stream.time_base
    times = [float(p.pts * time_base) for p in packets if p.pts is not None and p.is_keyframe]
    return sorted(set(times))


_LOCATION = re.compile(r"^[\w:]+, \S+\.(?:cpp|h):\d+, ")
_ERRNO = re.compile(r"^\[Errno -?\d+\] ")
_QUOTED_PATH = re.compile(r"(: |: Could not open input file: )?'?/\S*'?$")


def clean_cause(error: BaseException, *, mid_stream: bool = False) -> str:
    """A one-line cause from a decoder exception.

    Drops what the reader cannot use: C++ source locations, errno numbers, the path repeated
    (the error names the source already) and bug-report boilerplate. ``mid_stream``: the file opened
    and decoded up to here, so FFmpeg's "invalid data" means damaged data, not an unreadable container.
    """
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = _ERRNO.sub("", _LOCATION.sub("", text)).strip()
    text = text.replace("Could not open input file: ", "").strip()
    if text.startswith("/") or text.startswith("'/"):
        # torchcodec puts the path first: "Could not open input file: /x.mp4 Invalid data ..."
        text = text.split(" ", 1)[1] if " " in text else text
    text = _QUOTED_PATH.sub("", text).strip(" :")
    if "invalid data found when processing input" in text.lower():
        if mid_stream:
            return f"corrupt data in the video stream (FFmpeg: {text})"
        return "not a readable video container (corrupt, truncated, or not a video at all)"
    return text or type(error).__name__


def container_end(source: VideoSource, near: float) -> float | None:
    """End of the last frame as the container times it (its packet durations), read by demuxing the tail.

    PyAV's exact scan computes the end this way; torchcodec derives it from decoded frame durations,
    which FFmpeg sets from the nominal frame rate on some MP4 files. Reading the packets from the last
    keyframe before ``near`` (no decoding) gives torchcodec the same end as PyAV. `None` if unreadable.
    """
    import av

    try:
        with av.open(source.path if source.path is not None else io.BytesIO(source.data)) as container:
            stream = container.streams.video[0]
            container.seek(int(near / stream.time_base), stream=stream, backward=True)
            ends = [p.pts + (p.duration or 0) for p in container.demux(stream) if p.pts is not None]
            return float(max(ends) * stream.time_base) if ends else None
    except Exception:  # the end stays torchcodec's own: this only refines it
        return None


def _no_video_cause(container: Any) -> str:
    streams = ", ".join(
        f"{s.type}/{s.codec_context.name if s.codec_context is not None else 'unknown'}"
        for s in container.streams
    )
    if not streams:
        return "no streams found (corrupt or truncated container index)"
    return f"no video stream (streams: {streams})"


def diagnose(source: VideoSource, error: BaseException) -> str:
    """Why torchcodec refused a file, found by inspecting it with PyAV (demuxing only).

    torchcodec reports an audio-only file and an unknown codec the same way ("best video stream
    is unknown"); a look at the streams tells them apart. Runs on the error path only.
    """
    import av

    cause = clean_cause(error)
    try:
        with av.open(source.path if source.path is not None else io.BytesIO(source.data)) as container:
            if not container.streams.video:
                return _no_video_cause(container)
            stream = container.streams.video[0]
            if stream.codec_context is None:
                return f"unsupported codec: no FFmpeg decoder for video stream {stream.index}"
            # PyAV ships its own FFmpeg, which may decode what the system's cannot.
            return f"{cause} (PyAV can read its {stream.codec_context.name} stream: try backend='pyav')"
    except Exception as inspection_error:
        return clean_cause(inspection_error)
