"""Configuration of video DPO: TRL's `DPOConfig` and `ScriptArguments`, plus what video needs.

The YAML recipes under `recipes/` are parsed into these classes by `trl.TrlParser`, with unknown keys an
error, so every key a recipe may hold is a field here, in TRL's `DPOConfig`, or in `trl.ModelConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import DPOConfig
from trl import ScriptArguments as TrlScriptArguments

from safevid.video import VideoSampling

# Fields of `VideoSampling` that a training run may override, keyed by their config name.
SAMPLING_OVERRIDES: dict[str, str] = {
    "video_num_frames": "num_frames",
    "video_fps": "fps",
    "video_max_frames": "max_frames",
    "video_max_pixels": "max_pixels",
    "video_backend": "backend",
}


@dataclass
class ScriptArguments(TrlScriptArguments):
    """Dataset arguments of `recipes/dpo.py` (TRL's `ScriptArguments`).

    `dataset_name` is a Hub id (`"<org>/SafeVid-350K"`) or a local folder written by the SafeVid build;
    `dataset_config` is `"default"` (flat columns) or `"conversational"` (TRL's preference format). Both give
    the same training sequences. Video cells resolve as `safevid.video.references` says: relative paths inside
    the dataset's folder or Hub repository (or `video_root`); absolute ones only under `allowed_local_media_path`.
    With `dataset_format` other than `"safevid"`, the dataset is first converted and validated once
    (`safevid.preferences`) into `<cache_dir>/converted/`, and that copy is trained on.
    """

    dataset_config: str | None = field(
        default="default",
        metadata={
            "help": "Dataset config: 'default' (flat columns) or 'conversational' (TRL preference format)."
        },
    )

    dataset_format: str = field(
        default="safevid",
        metadata={
            "help": "Format of `dataset_name`: 'safevid', or one converted (and validated) once before training: "
            "'align-anything', 'llamafactory', 'columns' (with `column_map`).",
            "choices": ["safevid", "align-anything", "llamafactory", "columns"],
        },
    )
    column_map: str | None = field(
        default=None,
        metadata={
            "help": "For dataset_format=columns: SafeVid name=dataset column pairs, e.g. "
            "'video=video_path,prompt=question,chosen=safe_answer,rejected=unsafe_answer'."
        },
    )
    max_rejected_fraction: float = field(
        default=0.01,
        metadata={
            "help": "Converting an outside format stops once more than this share of a split's rows is rejected "
            "(rejected rows are always reported by name and cause)."
        },
    )
    video_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder that relative video cells name (default: the dataset's own folder or Hub repo)."
        },
    )
    allowed_local_media_path: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Roots under which absolute video cells (or cells climbing out with `..`) may be read; by "
            "default none are."
        },
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_rejected_fraction <= 1.0:
            raise ValueError(
                f"max_rejected_fraction={self.max_rejected_fraction}: use a share between 0 and 1."
            )
        if self.dataset_streaming:
            raise ValueError(
                "dataset_streaming=True is not supported by video DPO: frames are decoded once into an on-disk "
                "cache before training, which needs a map-style dataset. Remove `dataset_streaming`."
            )


@dataclass
class VideoDPOConfig(DPOConfig):
    """TRL's `DPOConfig` with what preference training on video needs.

    Video sampling defaults to the configuration stored with every row (the `sampling` column, written by the
    data build), so training sees the frames the data was generated from; the `video_*` fields override single
    settings of it (fewer frames or a smaller pixel budget to fit memory) and the model card records the result.

    Sequences are never truncated: rows longer than `max_length` (vision plus text tokens, counted up front) are
    dropped and counted per reason before training.

    Parameters:
        video_num_frames (`int`, *optional*):
            Frames per video, overriding the rows' sampling.
        video_fps (`float`, *optional*):
            Sample at this many frames per second of video instead (overrides the rows' sampling).
        video_max_frames (`int`, *optional*):
            Cap on frames in fps mode (overrides the rows' sampling).
        video_max_pixels (`int`, *optional*):
            Pixel budget per decoded frame (overrides the rows' sampling).
        video_backend (`str`, *optional*):
            Decoder, `"torchcodec"` or `"pyav"` (overrides the rows' sampling).
        skip_bad_videos (`bool`, *optional*, defaults to `False`):
            Drop rows whose video cannot be decoded (counted and reported) instead of failing.
        frame_timestamps_mismatch (`str`, *optional*, defaults to `"warn"`):
            What to do with a row whose re-sampled frame timestamps differ from its `frame_timestamps` (written by the
            build) by more than half a source frame, when the run samples as the build did: `"warn"` keeps it,
            `"drop"` drops it; either way it is counted per reason and reported.
        cache_dir (`str`, *optional*):
            Where the decoded frames (`frames/`, one entry per video and sampling, shared by every row and rank), the
            prepared rows and the precomputed reference log-probs are kept, keyed by hashes of the videos, dataset,
            processor, sampling and model, and reused across runs. Defaults to `$SAFEVID_HOME/dpo-cache`.
    """

    max_length: int | None = field(
        default=4096,
        metadata={
            "help": "Maximum tokens of prompt (vision + text) plus completion. Longer rows are dropped and counted, "
            "never truncated. `None` keeps every row."
        },
    )
    video_num_frames: int | None = field(
        default=None, metadata={"help": "Frames per video (overrides the rows')."}
    )
    video_fps: float | None = field(
        default=None,
        metadata={"help": "Frames per second of video instead of a count (overrides the rows')."},
    )
    video_max_frames: int | None = field(
        default=None, metadata={"help": "Cap on frames in fps mode (overrides the rows')."}
    )
    video_max_pixels: int | None = field(
        default=None, metadata={"help": "Pixel budget per frame (overrides the rows')."}
    )
    video_backend: str | None = field(
        default=None, metadata={"help": "Decoder: 'torchcodec' or 'pyav' (overrides the rows')."}
    )
    skip_bad_videos: bool = field(
        default=False,
        metadata={
            "help": "Drop rows whose video cannot be decoded (counted and reported) instead of failing."
        },
    )
    frame_timestamps_mismatch: str = field(
        default="warn",
        metadata={
            "help": "A row whose re-sampled frame timestamps differ from the build's `frame_timestamps`: 'warn' "
            "(keep it) or 'drop'. Counted and reported either way.",
            "choices": ["warn", "drop"],
        },
    )
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Decoded frames (one per video and sampling), prepared rows and precomputed reference "
            "log-probs, reused across runs (default: $SAFEVID_HOME/dpo-cache)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.truncation_mode != "keep_start":
            raise ValueError(
                f"truncation_mode={self.truncation_mode!r}: video DPO never truncates (cutting vision tokens breaks "
                "the model); over-long rows are dropped instead. Remove `truncation_mode`."
            )
        if self.frame_timestamps_mismatch not in ("warn", "drop"):
            raise ValueError(
                f"frame_timestamps_mismatch={self.frame_timestamps_mismatch!r}: use 'warn' (keep and report such "
                "rows) or 'drop' (drop and report them)."
            )
        if self.padding_free:
            raise ValueError("padding_free=True is not supported by video DPO; remove it.")
        # Validate the override now, not after the model has loaded.
        self.apply_sampling_overrides(VideoSampling())

    def sampling_overrides(self) -> dict[str, Any]:
        """The `VideoSampling` fields this run overrides, as `{field: value}`."""
        return {
            name: getattr(self, option)
            for option, name in SAMPLING_OVERRIDES.items()
            if getattr(self, option) is not None
        }

    def apply_sampling_overrides(self, sampling: VideoSampling) -> VideoSampling:
        """`sampling` (a row's) with this run's `video_*` overrides applied field by field
        (`VideoSampling.overridden`).

        Raises:
            `ValueError`: the result is not a valid `VideoSampling`; the message names the fields.
        """
        return sampling.overridden(self.sampling_overrides())
