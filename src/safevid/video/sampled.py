"""`SampledVideo` (frames plus the metadata that travels with every row) and `VideoProbe`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from safevid.video.sampling import VideoSampling

if TYPE_CHECKING:
    import torch
    from transformers.video_utils import VideoMetadata


@dataclass(frozen=True)
class VideoProbe:
    """What a container says about its video stream, read without decoding frames.

    Attributes:
        duration (`float`): seconds from the first frame to the end of the last one.
        fps (`float`): average frame rate.
        width (`int`), height (`int`): frame size after display rotation.
        num_frames (`int`): frames in the stream.
        codec (`str`): FFmpeg codec name.
        rotation (`int`): display rotation, degrees counter-clockwise.
        start (`float`): time of the first frame, seconds.
    """

    duration: float
    fps: float
    width: int
    height: int
    num_frames: int
    codec: str
    rotation: int
    start: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SampledVideo:
    """Frames sampled from one video, with where they came from.

    Attributes:
        frames (`torch.Tensor`): uint8 RGB, shape (T, C, H, W), after rotation and pixel budget.
        timestamps (`list[float]`): presentation time of each returned frame, seconds, ascending.
        indices (`list[int]`): frame index of each frame, ``round((t - start) * source_fps)``:
            exact for constant frame rate, the nominal index at the average rate for variable
            frame rate (the convention of transformers' ``VideoMetadata``: ``t = index / fps``).
        source_fps (`float`): average frame rate of the source.
        duration (`float`): source duration, seconds.
        width (`int`), height (`int`): source frame size after rotation (before the pixel budget).
        num_source_frames (`int`): frames in the source.
        backend (`str`): ``"torchcodec"``, ``"pyav"`` or ``"frames"`` (an in-memory array).
        codec (`str`): source codec.
        rotation (`int`): display rotation applied, degrees counter-clockwise.
        requested_frames (`int`): the count the sampling asked for.
        fallback (`str`, *optional*): ``"all_frames"`` when the source had fewer frames than
            requested and all of them were returned (never padded with duplicates);
            ``"frame_indices"`` when two timestamps fell on the same frame (variable frame rate, or
            a centre on its neighbour's keyframe) and the frames were taken at evenly spaced frame indices instead; ``"dropped_duplicates"``
            when that was not possible either (``seek_mode="approximate"``) and the repeat was
            dropped; ``"exact_positions"`` when keyframe positions were asked but some samples were taken
            at their segment centres (a keyframe nearest to several centres went to the closest one, or
            the keyframe times were unknown: an open ``VideoDecoder`` with no file); ``None`` otherwise.
        sampling (`VideoSampling`): the configuration used.
        source (`str`): printable name of the input.
    """

    frames: torch.Tensor = field(repr=False)
    timestamps: list[float]
    indices: list[int]
    source_fps: float
    duration: float
    width: int
    height: int
    num_source_frames: int
    backend: str
    codec: str
    rotation: int
    requested_frames: int
    fallback: str | None
    sampling: VideoSampling
    source: str

    @property
    def num_frames(self) -> int:
        return len(self.indices)

    @property
    def sampled_fps(self) -> float:
        """Sampled frames per second of video: ``len(indices) / num_source_frames * source_fps``.

        The same formula as ``transformers.video_utils.VideoMetadata.sampled_fps``, so Qwen2-VL and
        Qwen2.5-VL compute their temporal position ids from exactly this rate.
        """
        return len(self.indices) / self.num_source_frames * self.source_fps

    def metadata(self) -> dict[str, Any]:
        """Everything but the frames, JSON-able: the record stored with a dataset row."""
        return {
            "source": self.source,
            "timestamps": [round(t, 6) for t in self.timestamps],
            "indices": list(self.indices),
            "num_frames": self.num_frames,
            "sampled_fps": self.sampled_fps,
            "source_fps": self.source_fps,
            "duration": self.duration,
            "width": self.width,
            "height": self.height,
            "frame_width": int(self.frames.shape[-1]),
            "frame_height": int(self.frames.shape[-2]),
            "num_source_frames": self.num_source_frames,
            "backend": self.backend,
            "codec": self.codec,
            "rotation": self.rotation,
            "requested_frames": self.requested_frames,
            "fallback": self.fallback,
            "sampling": self.sampling.to_dict(),
        }

    @classmethod
    def from_metadata(cls, frames: torch.Tensor, metadata: dict[str, Any]) -> SampledVideo:
        """Rebuild a sampled video from its frames and its `metadata()` (e.g. read back from a frame store)."""
        return cls(
            frames=frames,
            timestamps=list(metadata["timestamps"]),
            indices=list(metadata["indices"]),
            source_fps=metadata["source_fps"],
            duration=metadata["duration"],
            width=metadata["width"],
            height=metadata["height"],
            num_source_frames=metadata["num_source_frames"],
            backend=metadata["backend"],
            codec=metadata["codec"],
            rotation=metadata["rotation"],
            requested_frames=metadata["requested_frames"],
            fallback=metadata["fallback"],
            sampling=VideoSampling.from_dict(metadata["sampling"]),
            source=metadata["source"],
        )

    def transformers_metadata(self) -> VideoMetadata:
        """A ``transformers.video_utils.VideoMetadata`` describing these frames.

        Pass it with the frames (``videos=[frames], video_metadata=[...]``, ``do_sample_frames=False``)
        so a processor knows the real sampled rate instead of assuming 24 fps.
        """
        from transformers.video_utils import VideoMetadata

        return VideoMetadata(
            total_num_frames=self.num_source_frames,
            fps=self.source_fps,
            width=self.width,
            height=self.height,
            duration=self.duration,
            video_backend=self.backend,
            frames_indices=list(self.indices),
        )
