"""Test videos whose frames say which frame they are, and deliberately broken files.

Every frame of a video made here carries its own index as a grid of bright/dark cells, so a
test can read back *which* source frame a sampler returned, after lossy compression, resizing
and rotation. Videos are encoded with PyAV, which ships its own FFmpeg (libx264, libvpx-vp9,
MPEG-4 Part 2 and, where the build has it, libx265), so nothing depends on the system FFmpeg.

Frame grid: ``GRID x GRID`` cells over the whole frame. The top-left cell is a red orientation
marker; the other cells carry the frame index, most significant bit first, as near-white (1) or
near-black (0) grey, which survives 4:2:0 chroma subsampling and heavy quantisation.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

GRID = 4
INDEX_BITS = GRID * GRID - 1
MAX_INDEX = 2**INDEX_BITS - 1
_ON, _OFF = 220, 30
_MARKER = (230, 20, 20)

# codec name -> (PyAV encoder, encoder options, default container suffix)
CODECS: dict[str, tuple[str, dict[str, str], str]] = {
    # "superfast" keeps B-frames (pts != dts, as in real uploads); "ultrafast" would drop them.
    "h264": ("libx264", {"preset": "superfast"}, ".mp4"),
    "vp9": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"}, ".webm"),
    "mpeg4": ("mpeg4", {"qscale": "4"}, ".mp4"),
    "hevc": ("libx265", {"preset": "ultrafast", "x265-params": "log-level=error"}, ".mp4"),
}
PATTERNS = ("index", "textured")
BAD_KINDS = ("zero_bytes", "garbage", "truncated", "corrupt_header", "audio_only", "unsupported_codec")


def encoder_available(codec: str) -> tuple[bool, str]:
    """Whether this PyAV build can encode `codec`, and if not, why (a reason fit for ``pytest.skip``)."""
    import av

    if codec not in CODECS:
        raise ValueError(f"Unknown codec {codec!r}; choose one of {sorted(CODECS)}.")
    encoder = CODECS[codec][0]
    try:
        av.codec.Codec(encoder, "w")
    except Exception as error:
        return False, f"PyAV {av.__version__}'s FFmpeg has no {encoder!r} encoder for {codec} ({error})."
    return True, ""


def frame_times(duration: float, fps: float, variable_frame_rate: bool = False) -> list[tuple[float, float]]:
    """The (start, duration) in seconds of every frame of a test video.

    Constant frame rate: ``max(1, round(duration * fps))`` frames of ``1 / fps``. Variable frame
    rate: frame durations cycle through ``0.5, 1, 1.5, 1`` times ``1 / fps`` (average ``1 / fps``),
    frames starting before `duration`. Tests use this schedule to know every frame's true time.
    """
    if duration <= 0 or fps <= 0:
        raise ValueError(f"duration and fps must be positive, got duration={duration}, fps={fps}.")
    step = 1.0 / fps
    if not variable_frame_rate:
        return [(i * step, step) for i in range(max(1, round(duration * fps)))]
    times: list[tuple[float, float]] = []
    start, cycle = 0.0, (0.5, 1.0, 1.5, 1.0)
    while start < duration - 1e-9 or not times:
        length = cycle[len(times) % len(cycle)] * step
        times.append((start, length))
        start += length
    return times


def pattern_frame(
    index: int, width: int, height: int, pattern: str = "index", rng_seed: int = 0
) -> np.ndarray:
    """The (height, width, 3) uint8 RGB image for frame `index` (see the module docstring).

    ``pattern="textured"`` adds a moving gradient and film-grain-like noise inside the cells
    (too weak to flip a bit) so the encoder and decoder do realistic work, as in benchmarks.
    """
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"Frame index {index} does not fit the {INDEX_BITS}-bit pattern (max {MAX_INDEX}).")
    if pattern not in PATTERNS:
        raise ValueError(f"Unknown pattern {pattern!r}; choose one of {PATTERNS}.")
    cells = np.empty((GRID, GRID, 3), dtype=np.uint8)
    for bit in range(INDEX_BITS):
        value = _ON if index >> (INDEX_BITS - 1 - bit) & 1 else _OFF
        cells[(bit + 1) // GRID, (bit + 1) % GRID] = value
    cells[0, 0] = _MARKER
    rows = np.minimum(np.arange(height) * GRID // height, GRID - 1)
    cols = np.minimum(np.arange(width) * GRID // width, GRID - 1)
    image = cells[rows[:, None], cols[None, :]]
    if pattern == "textured":
        ramp = (np.arange(width)[None, :] + np.arange(height)[:, None] + 4 * index) % 64
        grain = _grain(width, height, rng_seed)
        texture = ramp.astype(np.int16) - 32 + grain[index % len(grain)]
        image = np.clip(image.astype(np.int16) + texture[..., None], 0, 255).astype(np.uint8)
    return image


@functools.lru_cache(maxsize=4)
def _grain(width: int, height: int, seed: int) -> np.ndarray:
    # A small bank of noise fields reused in turn: per-frame random draws would dominate the
    # time to generate minutes-long benchmark videos.
    return np.random.default_rng(seed).integers(-12, 13, size=(7, height, width), dtype=np.int16)


def read_frame_index(frame: np.ndarray | torch.Tensor) -> int:
    """Read the index encoded by :func:`pattern_frame` back from a decoded frame.

    Accepts (C, H, W) or (H, W, C) uint8 RGB, at any resolution, in any of the four 90-degree
    orientations (the red marker tells which corner is the original top-left).

    Raises:
        ValueError: if no corner holds the orientation marker (not a test-pattern frame).
    """
    image = np.asarray(frame)
    if image.ndim != 3:
        raise ValueError(f"Expected one frame with 3 dimensions, got shape {image.shape}.")
    if image.shape[0] == 3 and image.shape[-1] != 3:
        image = image.transpose(1, 2, 0)
    for turns in range(4):
        grid = _cell_means(np.rot90(image, k=turns))
        red, green, blue = grid[0, 0]
        if red > 150 and green < 100 and blue < 100:
            bits = grid.mean(axis=-1).reshape(-1)[1:] > (_ON + _OFF) / 2
            return int(sum(int(bit) << (INDEX_BITS - 1 - i) for i, bit in enumerate(bits)))
    raise ValueError("No orientation marker found in any corner: not a safevid test-pattern frame.")


def marker_corner(frame: np.ndarray | torch.Tensor) -> str:
    """Which corner of a decoded frame holds the red marker: "top-left", "top-right", ...

    Lets a rotation test check the direction a decoder turned the picture.
    """
    image = np.asarray(frame)
    if image.shape[0] == 3 and image.shape[-1] != 3:
        image = image.transpose(1, 2, 0)
    grid = _cell_means(image)
    corners = {"top-left": (0, 0), "top-right": (0, -1), "bottom-left": (-1, 0), "bottom-right": (-1, -1)}
    redness = {name: grid[rc][0] - grid[rc][1:].mean() for name, rc in corners.items()}
    return max(redness, key=redness.__getitem__)


def _cell_means(image: np.ndarray) -> np.ndarray:
    # The central half of each cell only: edges blur under compression and resizing.
    height, width = image.shape[:2]
    means = np.empty((GRID, GRID, 3))
    for r in range(GRID):
        for c in range(GRID):
            top, bottom = (r * height) // GRID, ((r + 1) * height) // GRID
            left, right = (c * width) // GRID, ((c + 1) * width) // GRID
            dh, dw = max((bottom - top) // 4, 0), max((right - left) // 4, 0)
            cell = image[
                top + dh : max(bottom - dh, top + dh + 1), left + dw : max(right - dw, left + dw + 1)
            ]
            means[r, c] = cell.reshape(-1, 3).mean(axis=0)
    return means


def make_test_video(
    path: str | Path,
    *,
    codec: str = "h264",
    width: int = 160,
    height: int = 96,
    duration: float = 2.0,
    fps: float = 10.0,
    variable_frame_rate: bool = False,
    rotation: int = 0,
    pattern: str = "index",
    gop_seconds: float = 1.0,
    exact_gop: bool = False,
    faststart: bool = False,
    audio: bool = False,
    frame_source: Callable[[int, int, int], np.ndarray] | None = None,
) -> Path:
    """Encode a test video whose frames carry their index (see :func:`read_frame_index`).

    Args:
        path (`str` or `Path`):
            Output file; its suffix picks the container (``.mp4``, ``.webm``, ``.mkv``, ``.mov``,
            ``.avi``). Parent folders are created.
        codec (`str`, defaults to `"h264"`):
            One of ``"h264"``, ``"vp9"``, ``"mpeg4"`` (Part 2), ``"hevc"``. Check
            :func:`encoder_available` first for HEVC, which not every FFmpeg build encodes.
        width (`int`, defaults to 160), height (`int`, defaults to 96):
            Coded size in pixels; even numbers (4:2:0 chroma).
        duration (`float`, defaults to 2.0):
            Seconds; at least one frame is always written.
        fps (`float`, defaults to 10.0):
            Frame rate (the average one when `variable_frame_rate`).
        variable_frame_rate (`bool`, defaults to `False`):
            Use the irregular schedule of :func:`frame_times`.
        rotation (`int`, defaults to 0):
            Display rotation in degrees counter-clockwise (0, 90, 180, 270 or -90), written as
            the container's display matrix, as phones do; the coded frames stay unrotated.
        pattern (`str`, defaults to `"index"`):
            ``"index"`` (flat cells) or ``"textured"`` (cells plus moving texture and grain).
        gop_seconds (`float`, defaults to 1.0):
            Keyframe interval, so that samplers must really seek. The encoder may add keyframes at scene cuts
            (the pattern changes every 256 frames) unless `exact_gop`.
        exact_gop (`bool`, defaults to `False`):
            H.264 only: no scene-cut keyframes, so keyframes fall exactly every `gop_seconds`. Benchmarks need
            it: extra keyframes favour any sampler whose positions happen to fall just after them.
        faststart (`bool`, defaults to `False`):
            Put the MP4 index (``moov``) before the media data, as streaming uploads do.
        audio (`bool`, defaults to `False`):
            Add an AAC/Opus sine-wave track, as most real videos have.
        frame_source (`Callable[[int, int, int], np.ndarray]`, *optional*):
            ``frame_source(index, width, height)`` gives frame `index` as (height, width, 3) uint8 RGB instead
            of the index pattern (`pattern` is then unused): scenes such as the toy world's moving shapes.

    Returns:
        `Path`: the written file.
    """
    import av

    path = Path(path)
    if codec not in CODECS:
        raise ValueError(f"Unknown codec {codec!r}; choose one of {sorted(CODECS)}.")
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise ValueError(f"width and height must be even and at least 16, got {width}x{height}.")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}.")
    available, reason = encoder_available(codec)
    if not available:
        raise RuntimeError(reason)
    encoder, options, _ = CODECS[codec]
    times = frame_times(duration, fps, variable_frame_rate)
    if len(times) - 1 > MAX_INDEX:
        raise ValueError(f"{len(times)} frames exceed the pattern's capacity of {MAX_INDEX + 1}.")

    rate = Fraction(fps).limit_denominator(1001)
    # Every frame start and duration is a whole number of ticks: 1/fps, or 1/(2 fps) for VFR
    # (durations are multiples of half a frame). MPEG-4 Part 2 needs a small time base.
    time_base = 1 / (rate * (2 if variable_frame_rate else 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    container_options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=container_options) as container:
        if exact_gop and codec == "h264":
            options = {**options, "sc_threshold": "0"}
        stream = container.add_stream(encoder, rate=rate, options=dict(options))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = max(1, round(gop_seconds * fps))
        if rotation:
            stream.set_display_rotation(rotation)
        audio_stream = _add_audio(container, path) if audio else None
        # Encoders drop frame durations; the muxer needs them for the last frame's end time.
        durations: dict[int, int] = {}
        for index, (start, length) in enumerate(times):
            image = (frame_source or functools.partial(pattern_frame, pattern=pattern))(index, width, height)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(start / time_base), time_base
            durations[frame.pts] = max(1, round(length / time_base))
            _mux(container, stream.encode(frame), durations)
        _mux(container, stream.encode(None), durations)
        if audio_stream is not None:
            _write_audio(container, audio_stream, times[-1][0] + times[-1][1])
    return path


def _mux(container: Any, packets: Sequence[Any], durations: dict[int, int]) -> None:
    for packet in packets:
        if packet.pts is not None and packet.pts in durations:
            packet.duration = durations[packet.pts]
        container.mux(packet)


def _add_audio(container: Any, path: Path) -> Any:
    codec = "libopus" if path.suffix.lower() in (".webm", ".ogg", ".opus") else "aac"
    stream = container.add_stream(codec, rate=48000)
    stream.layout = "mono"
    return stream


def _write_audio(container: Any, stream: Any, seconds: float) -> None:
    import av

    rate, chunk = 48000, 960
    total = max(chunk, int(seconds * rate))
    for offset in range(0, total, chunk):
        t = (np.arange(offset, offset + chunk) / rate).astype(np.float32)
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, offset
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def make_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An audio file with no video stream (AAC in ``.m4a``/``.mp4``, Opus in ``.webm``/``.ogg``)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        _write_audio(container, _add_audio(container, path), seconds)
    return path


def make_bad_video(path: str | Path, kind: str) -> Path:
    """Write a file that a video sampler must reject with a clear error.

    Args:
        path (`str` or `Path`): output file (``.mp4`` unless the kind says otherwise).
        kind (`str`): one of :data:`BAD_KINDS`:

            - ``"zero_bytes"``: an empty file.
            - ``"garbage"``: random bytes, no container at all.
            - ``"truncated"``: a valid MP4 cut in half, losing its index (an interrupted download).
            - ``"corrupt_header"``: a valid MP4 whose index (``moov``) is overwritten with junk.
            - ``"audio_only"``: a valid AAC file with no video stream.
            - ``"unsupported_codec"``: a valid MP4 whose video track declares an unknown codec
              (fourcc ``zzzz``), so the container opens but no decoder exists.

    Returns:
        `Path`: the written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, size=64 * 1024, dtype=np.uint8).tobytes())
    elif kind == "audio_only":
        make_audio_only(path)
    elif kind in ("truncated", "corrupt_header", "unsupported_codec"):
        scratch = path.with_name(path.stem + ".source.mp4")
        make_test_video(scratch, duration=2.0, fps=10.0)
        data = bytearray(scratch.read_bytes())
        scratch.unlink()
        if kind == "truncated":
            data = data[: len(data) // 2]
        elif kind == "corrupt_header":
            start, size = _find_box(data, b"moov")
            data[start + 8 : start + size] = (
                np.random.default_rng(1).integers(0, 256, size - 8, np.uint8).tobytes()
            )
        else:
            # The sample entry inside stsd, not the "avc1" compatible brand in ftyp.
            fourcc = data.find(b"avc1", data.find(b"stsd"))
            if fourcc < 0 or data.find(b"stsd") < 0:
                raise RuntimeError("No avc1 sample entry found in the H.264 MP4 to relabel.")
            data[fourcc : fourcc + 4] = b"zzzz"
        path.write_bytes(bytes(data))
    else:
        raise ValueError(f"Unknown bad-video kind {kind!r}; choose one of {BAD_KINDS}.")
    return path


def _find_box(data: bytearray, name: bytes) -> tuple[int, int]:
    # Top-level ISO-BMFF boxes: 4-byte big-endian size, 4-byte type.
    offset = 0
    while offset + 8 <= len(data):
        (size,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == name:
            return offset, size
        if size < 8:
            break
        offset += size
    raise RuntimeError(f"No top-level {name.decode()} box in the MP4.")


def make_video_set(out_dir: str | Path, *, include_bad: bool = True) -> dict[str, Path]:
    """Write the standard set of test videos (codecs, sizes, VFR, rotation, one-frame, bad files).

    Returns a mapping of a short name to each file. HEVC is left out when the encoder is absent.
    """
    out_dir = Path(out_dir)
    specs: dict[str, dict[str, Any]] = {
        "h264_160x96.mp4": {},
        "h264_640x360_3s.mp4": {
            "width": 640,
            "height": 360,
            "duration": 3.0,
            "fps": 30.0,
            "pattern": "textured",
        },
        "vp9_160x96.webm": {"codec": "vp9"},
        "mpeg4_160x96.avi": {"codec": "mpeg4"},
        "hevc_160x96.mp4": {"codec": "hevc"},
        "h264_vfr.mkv": {"variable_frame_rate": True},
        "h264_rotated90.mp4": {"rotation": 90},
        "h264_one_frame.mp4": {"duration": 0.1},
        "h264_with_audio.mp4": {"audio": True},
    }
    written: dict[str, Path] = {}
    for name, spec in specs.items():
        if not encoder_available(spec.get("codec", "h264"))[0]:
            continue
        written[name] = make_test_video(out_dir / name, **spec)
    if include_bad:
        for kind in BAD_KINDS:
            suffix = ".m4a" if kind == "audio_only" else ".mp4"
            written[f"bad_{kind}{suffix}"] = make_bad_video(out_dir / f"bad_{kind}{suffix}", kind)
    return written


def expected_frame_count(duration: float, fps: float, variable_frame_rate: bool = False) -> int:
    """How many frames :func:`make_test_video` writes for these settings."""
    return len(frame_times(duration, fps, variable_frame_rate))


__all__ = [
    "BAD_KINDS",
    "CODECS",
    "MAX_INDEX",
    "PATTERNS",
    "encoder_available",
    "expected_frame_count",
    "frame_times",
    "make_audio_only",
    "make_bad_video",
    "make_test_video",
    "make_video_set",
    "marker_corner",
    "pattern_frame",
    "read_frame_index",
]
