"""`VideoSampling`, the one sampling configuration, and the arithmetic it implies.

Data build, training and evaluation all sample video through one `VideoSampling`, stored with
every dataset row (``to_dict``), so the frames a model is trained on and evaluated on are chosen
the same way. Planning is pure arithmetic (no decoder), so it is unit-testable and identical for
every backend.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

BACKENDS = ("torchcodec", "pyav")
SEEK_MODES = ("exact", "approximate")
POSITIONS = ("exact", "keyframe")
DEFAULT_NUM_FRAMES = 8
DEFAULT_MAX_PIXELS = 32 * 32 * 768
"""786,432 pixels (1024x768): the largest per-frame budget among the supported families' video processors in
transformers (Qwen3-VL's ``size["longest_edge"]``; Qwen2-VL and Qwen2.5-VL keep 28*28*768 = 602,112,
LLaVA-OneVision 384x384, LLaVA-NeXT-Video 336x336), so no family is sent fewer pixels than its processor keeps, and
no video costs more than its budget in memory, however large its frames."""


@dataclass(frozen=True)
class VideoSampling:
    """How to turn a video into frames.

    Frames are taken at uniformly spaced timestamps, the centres of ``n`` equal segments of the
    stream (or, with ``positions="keyframe"``, on the keyframes nearest those centres), found by
    seeking rather than by decoding the whole stream. ``n`` is `num_frames`, or
    ``floor(duration * fps)`` in fps mode (at least 1), then capped by `max_frames`. When two
    centres fall on one long-lasting frame (variable frame rate) the ``n`` frames are taken at the
    centres of ``n`` equal runs of frame indices instead, so a stream of at least ``n`` frames
    always gives ``n`` distinct frames. A video with fewer frames than ``n`` gives all its frames,
    never duplicates. Both say so in the sampled metadata (``fallback``); fewer than `min_frames`
    is an error.

    Args:
        num_frames (`int`, *optional*):
            Frames per video. Exactly one of `num_frames` and `fps` is set; when neither is
            given, ``num_frames`` is 8.
        fps (`float`, *optional*):
            Target frames per second of video time instead of a fixed count.
        max_frames (`int`, *optional*):
            Cap on the frame count in fps mode (``None``: no cap). Must be at least `num_frames`.
        min_frames (`int`, defaults to 1):
            Fewer available frames than this is a `VideoDecodeError`.
        max_pixels (`int`, *optional*, defaults to `DEFAULT_MAX_PIXELS`, 786,432):
            Pixel budget per frame: larger frames are scaled down, keeping the aspect ratio,
            to even width and height whose product is at most `max_pixels`. Never upscales. The
            default is the largest budget of the supported families' processors; frames over it are
            resized as they are decoded, a few at a time, so an 8192x8192 clip costs about what its
            budget does, not 200 MB per full-size frame. ``None`` keeps the source size (and its memory).
        backend (`str`, defaults to `"torchcodec"`):
            ``"torchcodec"`` (decodes with the system FFmpeg) or ``"pyav"`` (PyAV's bundled FFmpeg).
        seek_mode (`str`, defaults to `"exact"`):
            ``"exact"`` reads the packet index first (demuxing only, no decoding) so durations,
            frame counts and seeks are exact, also for variable frame rate; ``"approximate"``
            trusts the container header: faster to open, wrong on files with lying headers.
        positions (`str`, defaults to `"exact"`):
            Where the samples land. ``"exact"``: at the segment centres. ``"keyframe"``: each on the
            keyframe nearest its centre, so a sample decodes one frame after its seek instead of every
            frame from the keyframe before the centre up to it (half a group of pictures on average):
            several times faster on long videos whose keyframes are seconds apart. What it costs: a sample
            can sit up to half the keyframe interval away from its centre (1 s with a keyframe every 2 s),
            and the spacing between samples is as uneven as the keyframes are. Samples stay distinct: a
            keyframe nearest to several centres goes to the closest of them and the others are taken at
            their centres (``fallback="exact_positions"``), so a video with fewer keyframes than samples is
            partly sampled exactly. Keyframe times come from the packet headers (demuxing, no decoding),
            the same for both backends. Frames given as arrays have nothing to decode: their positions stay
            exact.
        timeout_s (`float`, *optional*):
            Bound on the wall time of one decode. When set, decoding runs in a separate worker
            process that is killed on timeout, so a hostile file (or a pipe that never delivers
            data) cannot hang the caller. See `safevid.video.worker` for the overhead. The decode
            pools of the build and evaluation always decode in worker processes, bounded by this or,
            when it is `None`, by `safevid.video.pool.DEFAULT_DECODE_TIMEOUT_S` (300 s).
    """

    num_frames: int | None = field(
        default=None, metadata={"help": "Frames per video (default 8 unless `fps` is set)."}
    )
    fps: float | None = field(default=None, metadata={"help": "Target frames per second instead of a count."})
    max_frames: int | None = field(default=None, metadata={"help": "Cap on the frame count in fps mode."})
    min_frames: int = field(default=1, metadata={"help": "Fewer available frames than this is an error."})
    max_pixels: int | None = field(
        default=DEFAULT_MAX_PIXELS,
        metadata={
            "help": "Pixel budget per frame; larger frames are downscaled as they are decoded (786432 = 1024x768, "
            "the largest the supported families' processors keep; null: the source size)."
        },
    )
    backend: str = field(default="torchcodec", metadata={"help": "Decoder: 'torchcodec' or 'pyav'."})
    seek_mode: str = field(default="exact", metadata={"help": "'exact' (scan the index) or 'approximate'."})
    positions: str = field(
        default="exact",
        metadata={
            "help": "'exact' (segment centres) or 'keyframe' (the keyframe nearest each centre: several times "
            "faster to decode, but up to half a keyframe interval off-centre and unevenly spaced)."
        },
    )
    timeout_s: float | None = field(
        default=None, metadata={"help": "Kill a decode after this many seconds (runs in a worker process)."}
    )

    def __post_init__(self) -> None:
        if self.num_frames is not None and self.fps is not None:
            raise ValueError(
                f"Set exactly one of num_frames and fps, got num_frames={self.num_frames}, fps={self.fps}."
            )
        if self.num_frames is None and self.fps is None:
            object.__setattr__(self, "num_frames", DEFAULT_NUM_FRAMES)
        if self.num_frames is not None and (isinstance(self.num_frames, bool) or self.num_frames < 1):
            raise ValueError(f"num_frames must be a positive integer, got {self.num_frames!r}.")
        if self.fps is not None and not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"fps must be a positive number, got {self.fps!r}.")
        if self.max_frames is not None:
            if self.max_frames < 1:
                raise ValueError(f"max_frames must be a positive integer, got {self.max_frames!r}.")
            if self.num_frames is not None and self.num_frames > self.max_frames:
                raise ValueError(f"num_frames={self.num_frames} exceeds max_frames={self.max_frames}.")
        if self.min_frames < 1:
            raise ValueError(f"min_frames must be a positive integer, got {self.min_frames!r}.")
        ceiling = self.num_frames if self.num_frames is not None else self.max_frames
        if ceiling is not None and self.min_frames > ceiling:
            raise ValueError(
                f"min_frames={self.min_frames} exceeds the most frames ever sampled ({ceiling})."
            )
        if self.max_pixels is not None and self.max_pixels < 4:
            raise ValueError(f"max_pixels must be at least 4 (a 2x2 frame), got {self.max_pixels!r}.")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}.")
        if self.seek_mode not in SEEK_MODES:
            raise ValueError(f"seek_mode must be one of {SEEK_MODES}, got {self.seek_mode!r}.")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}.")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive (or None for no timeout), got {self.timeout_s!r}.")

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-able dict, the form stored with every dataset row."""
        return asdict(self)

    def overridden(self, overrides: dict[str, Any]) -> VideoSampling:
        """This sampling with ``overrides`` (`{field: value}`, `None` values left out) applied field by field.

        Fields not overridden keep their values (a row's pixel budget and decoder survive a new frame count).
        Choosing ``fps`` replaces a frame count and vice versa: a `VideoSampling` holds exactly one of them.

        Raises:
            ValueError: an unknown field, or an invalid result; the message names the overrides.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"Unknown VideoSampling keys {unknown}; known keys are {sorted(asdict(self))}.")
        if "fps" in given:
            given.setdefault("num_frames", None)
        elif "num_frames" in given:
            given.setdefault("fps", None)
        try:
            return replace(self, **given)
        except ValueError as error:
            raise ValueError(f"Invalid video sampling override {given}: {error}") from error

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoSampling:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error, not ignored.

        Raises:
            ValueError: if `data` has a key that is not a field (a typo or a newer schema).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown VideoSampling keys {unknown}; known keys are {sorted(known)}.")
        return cls(**data)

    def frame_count(self, duration: float) -> int:
        """How many frames to sample from `duration` seconds of video (before availability)."""
        if self.num_frames is not None:
            return self.num_frames
        assert self.fps is not None
        # floor, as transformers' own fps sampling does; the epsilon absorbs float noise such
        # as 2.0 s * 3 fps = 5.999999.
        count = max(1, math.floor(duration * self.fps + 1e-6))
        return min(count, self.max_frames) if self.max_frames is not None else count


def segment_centres(start: float, end: float, count: int) -> list[float]:
    """`count` timestamps at the centres of equal segments of ``[start, end)``, ascending."""
    if count < 1:
        raise ValueError(f"count must be positive, got {count}.")
    step = (end - start) / count
    return [start + (i + 0.5) * step for i in range(count)]


def index_centres(num_frames: int, count: int) -> list[int]:
    """`count` frame indices at the centres of equal runs of ``range(num_frames)``: distinct when count <= num_frames."""
    if not 1 <= count <= num_frames:
        raise ValueError(f"count must be in 1..{num_frames}, got {count}.")
    return [math.floor((i + 0.5) * num_frames / count) for i in range(count)]


def nearest_keyframes(centres: list[float], keyframes: list[float]) -> list[float | None]:
    """The keyframe each of the ascending `centres` lands on: its nearest one, each keyframe used once.

    A keyframe nearest to several centres goes to the closest of them (the earlier one on a tie); the others
    get `None` and keep their exact position. With each `None` replaced by its centre, the result is strictly
    ascending when `centres` is, so the samples stay distinct and in order. No keyframes: all `None`.
    """
    keys = sorted(set(keyframes))
    if not keys:
        return [None] * len(centres)
    nearest = []
    for centre in centres:
        after = bisect.bisect_left(keys, centre)
        # The nearest keyframe is the last one before the centre or the first at or after it (the earlier on a tie).
        nearest.append(min(keys[max(0, after - 1) : after + 1], key=lambda k: (abs(k - centre), k)))
    winner: dict[float, int] = {}
    for i, key in enumerate(nearest):
        if key not in winner or abs(key - centres[i]) < abs(key - centres[winner[key]]):
            winner[key] = i
    return [key if winner[key] == i else None for i, key in enumerate(nearest)]


def target_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """The (width, height) that fits `max_pixels`, keeping the aspect ratio; even, never larger.

    Even sizes keep 4:2:0 chroma planes whole in the decoders' scalers and suit vision
    processors, which resize to their own patch multiples anyway.
    """
    if max_pixels is None or width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    new_width = max(2, math.floor(width * scale / 2) * 2)
    new_height = max(2, math.floor(height * scale / 2) * 2)
    # A 2-pixel floor on a very thin frame can overshoot the budget; shrink the long side.
    while new_width * new_height > max_pixels and max(new_width, new_height) > 2:
        if new_width >= new_height:
            new_width -= 2
        else:
            new_height -= 2
    return new_width, new_height
