"""Turn a SafeVid preference split into training rows: frames decoded once, tokens counted, nothing truncated.

One preprocessing pass (`datasets.map`, cached in an Arrow file keyed by a hash of the dataset, the processor and
the sampling) decodes each row's video with the `VideoSampling` stored in the row, renders the chat template,
expands the video placeholder through the model's own processor and tokenizes the two completions. The decoded
frames are kept as raw uint8 bytes, so every later epoch, and both halves (chosen, rejected) of every pair, reuse
them: the collator only resizes and normalises. Rows whose vision plus text tokens exceed `max_length` are
dropped and counted per reason; vision tokens are never cut.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safevid.families import VideoFamily, get_family, video_processor_inputs
from safevid.schema import CONVERSATIONAL_METADATA, REQUIRED_FOR_TRAINING, to_conversational
from safevid.video import VideoDecodeError, VideoSampling, sample_video

if TYPE_CHECKING:
    from datasets import Dataset

    from safevid.training.config import VideoDPOConfig

# Bump when the preprocessing changes what it writes: old caches are then ignored, not misread.
CACHE_VERSION = 1
# Columns of a prepared split; the collator reads the first group, the report the second.
PREPARED_COLUMNS: tuple[str, ...] = (
    "prompt_ids",
    "chosen_ids",
    "rejected_ids",
    "frames",
    "frames_shape",
    "video_metadata",
    "num_vision_tokens",
)
REPORT_COLUMNS: tuple[str, ...] = (
    "row_name",
    "drop_reason",
    "num_tokens",
    "num_text_tokens",
    "sampling_used",
)


@dataclass
class CachedVideo:
    """Frames of one row read back from the cache, with the metadata the processor needs.

    It quacks like `safevid.video.SampledVideo` for `safevid.families.video_processor_inputs`.
    """

    frames: Any  # torch.uint8, (T, C, H, W)
    metadata: dict[str, Any]

    def transformers_metadata(self) -> Any:
        from transformers.video_utils import VideoMetadata

        return VideoMetadata(**self.metadata)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CachedVideo:
        """Rebuild the frames of a prepared row (no decoding: a view of the cached bytes)."""
        import numpy as np
        import torch

        shape = tuple(row["frames_shape"])
        array = np.frombuffer(row["frames"], dtype=np.uint8).reshape(shape)
        return cls(frames=torch.from_numpy(array.copy()), metadata=json.loads(row["video_metadata"]))


@dataclass
class PreparationReport:
    """What the preprocessing pass kept and dropped, per reason."""

    split: str
    total: int
    kept: int
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    samplings: list[str] = field(
        default_factory=list
    )  # JSON `VideoSampling`s the kept rows were decoded with

    def format(self) -> str:
        lines = [f"[safevid] {self.split}: kept {self.kept} of {self.total} rows"]
        for reason, count in sorted(self.dropped.items()):
            shown = ", ".join(self.examples.get(reason, [])[:3])
            lines.append(f"  dropped {count} ({reason}), e.g. {shown}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def load_preference_dataset(
    path_or_id: str | os.PathLike[str], config: str | None = "default", split: str = "train"
) -> Dataset:
    """Load one split of a SafeVid preference dataset from the Hub or a local build folder.

    Args:
        path_or_id (`str`):
            A Hub id (`"<org>/SafeVid-350K"`), or a local folder with Parquet shards and a README (a SafeVid build).
        config (`str`, *optional*, defaults to `"default"`):
            `"default"` (flat columns) or `"conversational"` (TRL's preference format).
        split (`str`, defaults to `"train"`).
    """
    from datasets import load_dataset

    return load_dataset(os.fspath(path_or_id), name=config, split=split)


def check_columns(dataset: Dataset, split: str) -> None:
    """Fail early, naming what is missing, when a split lacks a column training needs."""
    missing = [name for name in REQUIRED_FOR_TRAINING if name not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The {split} split lacks the column(s) {missing} that video DPO needs ({list(REQUIRED_FOR_TRAINING)}); "
            f"it has {dataset.column_names}. Use a SafeVid preference build (configs 'default' or "
            "'conversational'), or rename your columns to these."
        )


def is_prepared(dataset: Dataset) -> bool:
    """Whether `dataset` is already the output of `prepare_preference_dataset`."""
    return all(name in dataset.column_names for name in PREPARED_COLUMNS)


def default_cache_dir() -> Path:
    from safevid.paths import safevid_home

    return safevid_home() / "dpo-cache"


def prepare_preference_dataset(
    dataset: Dataset, processor: Any, args: VideoDPOConfig, *, split: str = "train"
) -> tuple[Dataset, PreparationReport]:
    """Decode, tokenize and length-check every row once; return the rows to train on and a report.

    Args:
        dataset (`datasets.Dataset`):
            A split in the `default` or `conversational` config (see `safevid.schema`).
        processor:
            The model's transformers processor (it must handle video).
        args (`VideoDPOConfig`):
            Supplies `max_length`, the `video_*` sampling overrides, `skip_bad_videos`, `cache_dir` and
            `dataset_num_proc`.
        split (`str`): name used in messages.

    Returns:
        `(Dataset, PreparationReport)`: the kept rows (columns `PREPARED_COLUMNS` plus report columns), and counts.

    Raises:
        `ValueError`: a required column is missing; a video cannot be decoded (unless `skip_bad_videos`); a prompt
        has no video; every row was dropped. Messages name the row and the fix.
    """
    from datasets import Features, List, Value, Video
    from trl.trainer.utils import global_then_local_main_first

    if is_prepared(dataset):
        used = sorted(set(dataset["sampling_used"])) if "sampling_used" in dataset.column_names else []
        return dataset, PreparationReport(split=split, total=len(dataset), kept=len(dataset), samplings=used)
    check_columns(dataset, split)
    family = require_video_processor(processor)
    if isinstance(dataset.features["video"], Video):
        # Undecoded: {"path", "bytes"} go to `sample_video`, which seeks instead of decoding every frame.
        dataset = dataset.cast_column("video", Video(decode=False))
    fingerprint = _fingerprint(dataset, processor, args)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    features = Features(
        {
            "prompt_ids": List(Value("int32")),
            "chosen_ids": List(Value("int32")),
            "rejected_ids": List(Value("int32")),
            "frames": Value("large_binary"),
            "frames_shape": List(Value("int32")),
            "video_metadata": Value("string"),
            "num_vision_tokens": Value("int32"),
            "row_name": Value("string"),
            "drop_reason": Value("string"),
            "num_tokens": Value("int32"),
            "num_text_tokens": Value("int32"),
            "sampling_used": Value("string"),
        }
    )
    with global_then_local_main_first():
        prepared = dataset.map(
            _prepare_row,
            with_indices=True,
            fn_kwargs={"processor": processor, "family": family, "args": _RowArgs.from_config(args)},
            remove_columns=dataset.column_names,
            features=features,
            num_proc=args.dataset_num_proc,
            writer_batch_size=32,  # a row holds T frames: keep Arrow batches small
            cache_file_name=str(cache_dir / f"frames-{fingerprint}.arrow"),
            new_fingerprint=fingerprint,
            desc=f"Decoding videos and tokenizing the {split} split",
        )
    report, keep = _select(prepared, args.max_length, split)
    from accelerate import PartialState

    PartialState().print(report.format())
    if not keep:
        raise ValueError(
            f"Every row of the {split} split was dropped ({dict(report.dropped)}). "
            + _advice(report, args.max_length)
        )
    if len(keep) < len(prepared):
        prepared = prepared.select(keep)
    return prepared, report


def require_video_processor(processor: Any) -> VideoFamily:
    """The processor's video family, or a clear error when it cannot take video."""
    if getattr(processor, "video_processor", None) is None:
        raise ValueError(
            f"{type(processor).__name__} has no video processor, so it cannot feed video to a model. Video DPO needs "
            "a video LMM's processor (Qwen2.5-VL, Qwen2-VL, Qwen3-VL, LLaVA-NeXT-Video, LLaVA-OneVision)."
        )
    return get_family(processor)


@dataclass(frozen=True)
class _RowArgs:
    """The part of the config a row needs; small and picklable for `num_proc` workers."""

    skip_bad_videos: bool
    config: Any = field(repr=False)

    @classmethod
    def from_config(cls, args: VideoDPOConfig) -> _RowArgs:
        return cls(args.skip_bad_videos, args)

    def sampling(self, stored: str | None) -> VideoSampling:
        """The row's stored sampling (or the default), with the run's overrides."""
        base = VideoSampling.from_dict(json.loads(stored)) if stored else VideoSampling()
        return self.config.apply_sampling_overrides(base)


def _prepare_row(
    row: dict[str, Any], index: int, *, processor: Any, family: VideoFamily, args: _RowArgs
) -> dict:
    from trl.data_utils import apply_chat_template

    name = f"id={row['id']}" if row.get("id") else f"row {index}"
    sampling = args.sampling(row.get("sampling"))
    try:
        video = sample_video(row["video"], sampling)
    except (VideoDecodeError, TypeError) as error:
        if args.skip_bad_videos:
            return _dropped(name, f"undecodable video: {error}", sampling)
        raise ValueError(
            f"Row {name}: {error}. Fix or remove this row's video, or set `skip_bad_videos: true` to drop such rows "
            "(they are counted and reported)."
        ) from error
    messages = _messages(row, name)
    texts = apply_chat_template(messages, processor)
    encoded = processor(
        text=[texts["prompt"]], add_special_tokens=False, **video_processor_inputs(processor, [video])
    )
    prompt_ids = list(encoded["input_ids"][0])
    video_token_id = processor.tokenizer.convert_tokens_to_ids(family.video_token)
    num_vision = sum(1 for token in prompt_ids if token == video_token_id)
    if num_vision == 0:
        raise ValueError(
            f"Row {name}: the rendered prompt has no {family.video_token} placeholder, so the model would never see "
            "the video. The prompt must hold a {'type': 'video'} content part and the chat template must render it."
        )
    tokenizer = processor.tokenizer
    chosen_ids = tokenizer(texts["chosen"], add_special_tokens=False)["input_ids"]
    rejected_ids = tokenizer(texts["rejected"], add_special_tokens=False)["input_ids"]
    if not chosen_ids or not rejected_ids:
        return _dropped(name, "empty completion", sampling)
    frames = video.frames.contiguous()
    metadata = video.transformers_metadata()
    return {
        "prompt_ids": prompt_ids,
        "chosen_ids": chosen_ids,
        "rejected_ids": rejected_ids,
        "frames": frames.numpy().tobytes(),
        "frames_shape": list(frames.shape),
        "video_metadata": json.dumps(
            {
                key: getattr(metadata, key)
                for key in _METADATA_FIELDS
                if getattr(metadata, key, None) is not None
            }
        ),
        "num_vision_tokens": num_vision,
        "row_name": name,
        "drop_reason": "",
        "num_tokens": len(prompt_ids) + max(len(chosen_ids), len(rejected_ids)),
        "num_text_tokens": len(prompt_ids) - num_vision + max(len(chosen_ids), len(rejected_ids)),
        "sampling_used": json.dumps(sampling.to_dict(), sort_keys=True),
    }


_METADATA_FIELDS = (
    "total_num_frames",
    "fps",
    "width",
    "height",
    "duration",
    "video_backend",
    "frames_indices",
)


def _dropped(name: str, reason: str, sampling: VideoSampling) -> dict[str, Any]:
    return {
        "prompt_ids": [],
        "chosen_ids": [],
        "rejected_ids": [],
        "frames": b"",
        "frames_shape": [],
        "video_metadata": "{}",
        "num_vision_tokens": 0,
        "row_name": name,
        "drop_reason": reason,
        "num_tokens": 0,
        "num_text_tokens": 0,
        "sampling_used": json.dumps(sampling.to_dict(), sort_keys=True),
    }


def _messages(row: dict[str, Any], name: str) -> dict[str, Any]:
    if isinstance(row["prompt"], str):
        # The `default` config: derive the conversational form with the schema's own function.
        filled = {key: row.get(key) for key in CONVERSATIONAL_METADATA}
        conversational = to_conversational({**filled, **row})
    else:
        conversational = row
        parts = [part for message in row["prompt"] for part in _content(message)]
        if not any(isinstance(part, dict) and part.get("type") == "video" for part in parts):
            raise ValueError(
                f"Row {name}: the conversational prompt has no {{'type': 'video'}} content part; the frames in the "
                "`video` column would never reach the model. Add the part to the user turn."
            )
    return {key: conversational[key] for key in ("prompt", "chosen", "rejected")}


def _content(message: dict[str, Any]) -> list[Any]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _select(prepared: Dataset, max_length: int | None, split: str) -> tuple[PreparationReport, list[int]]:
    report_columns = prepared.select_columns(list(REPORT_COLUMNS))
    reasons = report_columns["drop_reason"]
    lengths = report_columns["num_tokens"]
    names = report_columns["row_name"]
    keep: list[int] = []
    dropped: Counter = Counter()
    examples: dict[str, list[str]] = {}
    for index, (reason, length, name) in enumerate(zip(reasons, lengths, names, strict=True)):
        if not reason and max_length is not None and length > max_length:
            reason = f"longer than max_length={max_length}"
            name = f"{name} ({length} tokens)"
        if reason:
            key = reason.split(":")[0]
            dropped[key] += 1
            examples.setdefault(key, []).append(
                name if key == reason else f"{name}: {reason.split(':', 1)[1].strip()}"
            )
        else:
            keep.append(index)
    notes = []
    used = set(report_columns.select(keep)["sampling_used"]) if keep else set()
    if len(used) > 1:
        notes.append(
            f"{len(used)} different video samplings among the kept rows (from their `sampling` column)"
        )
    report = PreparationReport(split, len(prepared), len(keep), dropped, examples, notes, sorted(used))
    return report, keep


def _advice(report: PreparationReport, max_length: int | None) -> str:
    tips = []
    if any(key.startswith("longer than") for key in report.dropped):
        tips.append(
            f"raise `max_length` (now {max_length}) or shrink the video tokens (`video_num_frames`, "
            "`video_max_pixels`)"
        )
    if "undecodable video" in report.dropped:
        tips.append("check the videos named above")
    return ("To fix: " + "; ".join(tips) + ".") if tips else ""


def _fingerprint(dataset: Dataset, processor: Any, args: VideoDPOConfig) -> str:
    """Key of the frame cache: what the rows are, how they are sampled and tokenized."""
    tokenizer = processor.tokenizer
    signature = {
        "version": CACHE_VERSION,
        "dataset": dataset._fingerprint,
        "processor": processor.to_dict(),
        "tokenizer": [
            type(tokenizer).__name__,
            len(tokenizer),
            processor.chat_template or tokenizer.chat_template,
        ],
        "sampling_overrides": args.sampling_overrides(),
        "skip_bad_videos": args.skip_bad_videos,
    }
    blob = json.dumps(signature, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
