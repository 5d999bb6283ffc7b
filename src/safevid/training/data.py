"""Turn a SafeVid preference split into training rows: each video decoded once, tokens counted, nothing truncated.

Preparation makes two passes, the global main process first (then each node's local main, then the other ranks,
which find the work done):

Video cells are untrusted: each is read only through `safevid.video.references.VideoReferences` (bytes as is,
relative paths inside the dataset's folder, Hub repository or `video_root`, URLs and tar members fetched with
limits; absolute paths and paths climbing out with ``..`` refused unless under `allowed_local_media_path`). A cell
that cannot be resolved fails naming the row and the cause, or with `skip_bad_videos` is dropped and counted.

1. Frames. A row's frames are named by a `frame_key`: its video's identity (the `video_id` column when it is the
   SHA-256 of the video file, as a SafeVid build sets it, else a hash of the embedded bytes or the path) with the
   effective `VideoSampling` (the row's `sampling` column with the run's `video_*` overrides). Each key missing from
   the `FrameStore` in `<cache_dir>/frames` is decoded once, from the first row naming it, and written atomically
   (layout and guarantees in `safevid.video.frame_store`). Rows sharing a video share one entry: with SafeVid's
   ~10 pairs per video that is a tenth of the disk and of the decoding of a per-row copy, and a later run, or
   another rank, decodes nothing. Damaged entries are detected and decoded again. A content `video_id` is trusted
   to name the entry without reading the video, and checked against the video's bytes before frames are stored
   under it (`safevid.video.frame_store.stored_video`, the store's one writer): a dataset reusing another's ids with
   other videos fails naming the row, and never reaches the other's frames.
2. Rows. A `datasets.map`, cached in `<cache_dir>/rows-<fingerprint>.arrow` (a hash of the dataset, the processor
   and the sampling), renders the chat template, expands the video placeholder through the model's own processor
   (fed the stored frames) and tokenizes the two completions. A row keeps the key, the frames' shape and their
   metadata, not the frames: the collator memory-maps them by key, for every epoch and both halves of a pair.

Rows whose vision plus text tokens exceed `max_length` are dropped and counted per reason; vision tokens are never
cut. A row that carries the build's `frame_timestamps` and is sampled exactly as built (no overriding `video_*`
setting) is checked: its re-sampled timestamps must match the built ones within half a source frame, so the model
trains on the frames its answers were written about. Mismatches are counted per reason and reported, and the rows
kept (`frame_timestamps_mismatch="warn"`, the default) or dropped (`"drop"`).
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
from safevid.paths import default_cache_dir
from safevid.schema import CONVERSATIONAL_METADATA, REQUIRED_FOR_TRAINING, to_conversational
from safevid.video import SampledVideo, VideoDecodeError, VideoSampling
from safevid.video.frame_store import (
    STORE_VERSION,
    FrameStore,
    frame_key,
    is_content_id,
    stored_video,
    video_identity,
)
from safevid.video.references import VideoReferenceError, VideoReferences

if TYPE_CHECKING:
    from datasets import Dataset

    from safevid.training.config import VideoDPOConfig

# Bump when the row pass changes what it writes: old row caches are then ignored, not misread.
CACHE_VERSION = 2
# Columns of a prepared split; the collator reads the first group, the report the second.
PREPARED_COLUMNS: tuple[str, ...] = (
    "prompt_ids",
    "chosen_ids",
    "rejected_ids",
    "frame_key",
    "frames_shape",
    "video_metadata",
    "num_vision_tokens",
)
REPORT_COLUMNS: tuple[str, ...] = (
    "row_name",
    "drop_reason",
    "timestamps_check",
    "num_tokens",
    "num_text_tokens",
    "sampling_used",
)
# Values of `timestamps_check` that are not a mismatch ("<reason>: <detail>").
_UNCHECKED, _OVERRIDDEN, _MATCH = "", "overridden", "match"
# Column holding each row's frame key during the row pass (removed from its output).
_KEY_COLUMN = "_safevid_frame_key"


@dataclass
class CachedVideo:
    """Frames of one prepared row, read from the frame store, with the metadata the processor needs.

    It quacks like `safevid.video.SampledVideo` for `safevid.families.video_processor_inputs`.
    """

    frames: Any  # torch.uint8, (T, C, H, W)
    metadata: dict[str, Any]

    def transformers_metadata(self) -> Any:
        from transformers.video_utils import VideoMetadata

        return VideoMetadata(**self.metadata)

    @classmethod
    def from_row(cls, row: dict[str, Any], store: FrameStore) -> CachedVideo:
        """The frames of a prepared row: a memory map of its store entry (no decoding, no copy until used).

        Raises:
            `ValueError`: the entry is missing, damaged, or not the shape the row was prepared with.
        """
        import torch

        frames, _ = store.load(row["frame_key"])
        if list(frames.shape) != list(row["frames_shape"]):
            raise ValueError(
                f"Frame store entry {row['frame_key']} holds frames of shape {list(frames.shape)}, but the row was "
                f"prepared with {list(row['frames_shape'])}: the store and the prepared rows disagree. Delete "
                f"{store.root} and prepare the data again."
            )
        return cls(frames=torch.from_numpy(frames), metadata=json.loads(row["video_metadata"]))


@dataclass
class PreparationReport:
    """What the preprocessing pass kept, dropped and warned about, per reason, and how many videos it decoded."""

    split: str
    total: int
    kept: int
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    samplings: list[str] = field(
        default_factory=list
    )  # JSON `VideoSampling`s the kept rows were decoded with
    warned: Counter = field(default_factory=Counter)  # kept rows with a problem, per reason
    warning_examples: dict[str, list[str]] = field(default_factory=dict)
    videos: int = 0  # distinct (video, sampling) frame store entries the rows name
    decoded: int = 0  # of which decoded by this call (the rest were read from the store)

    def format(self) -> str:
        lines = [f"[safevid] {self.split}: kept {self.kept} of {self.total} rows"]
        for reason, count in sorted(self.dropped.items()):
            shown = ", ".join(self.examples.get(reason, [])[:3])
            lines.append(f"  dropped {count} ({reason}), e.g. {shown}")
        for reason, count in sorted(self.warned.items()):
            shown = ", ".join(self.warning_examples.get(reason, [])[:3])
            lines.append(f"  warning: kept {count} ({reason}), e.g. {shown}")
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
    from safevid.datasets_io import load_split

    return load_split(path_or_id, config, split=split)


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


def frame_store_for(args: VideoDPOConfig) -> FrameStore:
    """The frame store of a run: `<cache_dir>/frames`."""
    return FrameStore(Path(args.cache_dir or default_cache_dir()) / "frames")


def prepare_preference_dataset(
    dataset: Dataset,
    processor: Any,
    args: VideoDPOConfig,
    *,
    split: str = "train",
    references: VideoReferences | None = None,
) -> tuple[Dataset, PreparationReport]:
    """Decode each video once into the frame store, tokenize and length-check every row; return the rows and a report.

    Args:
        dataset (`datasets.Dataset`):
            A split in the `default` or `conversational` config (see `safevid.schema`).
        processor:
            The model's transformers processor (it must handle video).
        args (`VideoDPOConfig`):
            Supplies `max_length`, the `video_*` sampling overrides, `skip_bad_videos`, `frame_timestamps_mismatch`,
            `cache_dir` and `dataset_num_proc`.
        split (`str`): name used in messages.
        references (`VideoReferences`, *optional*):
            How the `video` cells are resolved (the dataset's folder, `video_root`, allowed roots); by default only
            embedded bytes, URLs and archive members are read — a path cell needs a folder to resolve against.

    Returns:
        `(Dataset, PreparationReport)`: the kept rows (columns `PREPARED_COLUMNS` plus report columns), and counts.
        The rows' frames are in `frame_store_for(args)`.

    Raises:
        `ValueError`: a required column is missing; a row's `sampling` is invalid; a video cannot be resolved or
        decoded (unless `skip_bad_videos`); a prompt has no video; every row was dropped. Messages name the row and the fix.
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
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    store = frame_store_for(args)
    row_args = _RowArgs.from_config(args, references or VideoReferences())
    fingerprint = _fingerprint(dataset, processor, args, row_args.references)
    features = Features(
        {
            "prompt_ids": List(Value("int32")),
            "chosen_ids": List(Value("int32")),
            "rejected_ids": List(Value("int32")),
            "frame_key": Value("string"),
            "frames_shape": List(Value("int32")),
            "video_metadata": Value("string"),
            "num_vision_tokens": Value("int32"),
            "row_name": Value("string"),
            "drop_reason": Value("string"),
            "timestamps_check": Value("string"),
            "num_tokens": Value("int32"),
            "num_text_tokens": Value("int32"),
            "sampling_used": Value("string"),
        }
    )
    with global_then_local_main_first():
        keys, identities = _frame_keys(
            dataset, row_args
        )  # may download or extract videos: the main process first
        failures, decoded = _fill_frame_store(
            dataset, keys, identities, store, row_args, args.dataset_num_proc, split
        )
        prepared = dataset.map(
            _prepare_row,
            with_indices=True,
            fn_kwargs={
                "processor": processor,
                "family": family,
                "args": row_args,
                "keys": keys,
                "store": store,
                "failures": failures,
            },
            remove_columns=dataset.column_names,
            features=features,
            num_proc=args.dataset_num_proc,
            cache_file_name=str(cache_dir / f"rows-{fingerprint}.arrow"),
            new_fingerprint=fingerprint,
            desc=f"Tokenizing the {split} split",
        )
    report, keep = _select(prepared, args.max_length, split, args.frame_timestamps_mismatch)
    report.videos, report.decoded = len(set(keys)), decoded
    report.notes.append(
        f"frames: {report.videos} distinct video(s) for {len(keys)} rows; {decoded} decoded now, "
        f"{report.videos - decoded} read from the frame store {store.root}"
    )
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
    references: VideoReferences
    config: Any = field(repr=False)

    @classmethod
    def from_config(cls, args: VideoDPOConfig, references: VideoReferences) -> _RowArgs:
        return cls(args.skip_bad_videos, references, args)

    def sampling(self, stored: str | None) -> VideoSampling:
        """The row's stored sampling (or the default), with the run's overrides."""
        base = VideoSampling.from_dict(json.loads(stored)) if stored else VideoSampling()
        return self.config.apply_sampling_overrides(base)


def _row_name(row_id: str | None, index: int) -> str:
    return f"id={row_id}" if row_id else f"row {index}"


def _frame_keys(dataset: Dataset, args: _RowArgs) -> tuple[list[str], list[str]]:
    """Each row's frame store key and video identity, reading only the small columns (the videos only of rows without
    a content `video_id`; a content `video_id` is checked against the video's bytes when its entry is written)."""
    size, columns = len(dataset), dataset.column_names

    def column(name: str) -> list[Any]:
        return list(dataset[name]) if name in columns else [None] * size

    identities, samplings, ids = column("video_id"), column("sampling"), column("id")
    unnamed = [index for index, identity in enumerate(identities) if not is_content_id(identity)]
    if unnamed:
        videos = dataset.select(unnamed).select_columns(["video"])
        for index, row in zip(unnamed, videos, strict=True):
            try:
                resolved = args.references.resolve(row["video"], row_name=_row_name(ids[index], index))
                identities[index] = video_identity(resolved)
            except VideoReferenceError as error:
                identities[index] = f"unresolved:{error.reference}"  # reported by the decoding pass
            except TypeError as error:
                raise ValueError(
                    f"Row {_row_name(ids[index], index)}: {error}; give the row a `video_id` (a SafeVid build does)."
                ) from error
    parsed: dict[str | None, VideoSampling] = {}
    keys: dict[tuple[str, str | None], str] = {}
    out = []
    for index, (identity, stored) in enumerate(zip(identities, samplings, strict=True)):
        if stored not in parsed:
            try:
                parsed[stored] = args.sampling(stored)
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"Row {_row_name(ids[index], index)}: invalid `sampling` {stored!r}: {error}. It must be the "
                    "JSON of a `safevid.video.VideoSampling` (`to_dict()`), as a SafeVid build writes it."
                ) from error
        if (identity, stored) not in keys:
            keys[identity, stored] = frame_key(identity, parsed[stored])
        out.append(keys[identity, stored])
    return out, identities


def _fill_frame_store(
    dataset: Dataset,
    keys: list[str],
    identities: list[str],
    store: FrameStore,
    args: _RowArgs,
    num_proc: int | None,
    split: str,
) -> tuple[dict[str, str], int]:
    """Decode every key missing from the store once, from its first row; return `({key: error}, decodes)`."""
    from datasets import Features, Value

    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    missing = [(key, index, identities[index]) for key, index in first.items() if not store.has(key)]
    if not missing:
        return {}, 0
    todo = dataset.select([index for _, index, _ in missing])
    outcome = todo.map(
        _decode_into_store,
        with_indices=True,
        fn_kwargs={"missing": missing, "store": store, "args": args},
        remove_columns=todo.column_names,
        features=Features({"error": Value("string")}),
        num_proc=min(num_proc, len(missing)) if num_proc else None,
        keep_in_memory=True,  # the store is the cache; this pass only returns errors
        new_fingerprint=hashlib.sha256("".join(key for key, _, _ in missing).encode()).hexdigest()[:32],
        desc=f"Decoding {len(missing)} videos of the {split} split",
    )
    failures = {key: error for (key, _, _), error in zip(missing, outcome["error"], strict=True) if error}
    return failures, len(missing)


def _decode_into_store(
    row: dict[str, Any], index: int, *, missing: list[tuple[str, int, str]], store: FrameStore, args: _RowArgs
) -> dict[str, str]:
    _, row_index, identity = missing[index]
    name = _row_name(row.get("id"), row_index)
    try:
        source = args.references.resolve(row["video"], row_name=f"Row {name}")
    except VideoReferenceError as error:
        if args.skip_bad_videos:
            return {"error": f"unresolvable video ({error.reason}): {error.cause}"}
        raise ValueError(
            f"{error}. Or set `skip_bad_videos: true` to drop such rows (they are counted and reported)."
        ) from error
    try:
        stored_video(store.root, identity, source, args.sampling(row.get("sampling")).to_dict())
    except (VideoDecodeError, TypeError) as error:
        if args.skip_bad_videos:
            return {"error": f"undecodable video: {error}"}
        raise ValueError(
            f"Row {name}: {error}. Fix or remove this row's video, or set `skip_bad_videos: true` to drop such rows "
            "(they are counted and reported)."
        ) from error
    return {"error": ""}


def _prepare_row(
    row: dict[str, Any],
    index: int,
    *,
    processor: Any,
    family: VideoFamily,
    args: _RowArgs,
    keys: list[str],
    store: FrameStore,
    failures: dict[str, str],
) -> dict:
    import torch
    from trl.data_utils import apply_chat_template

    name = _row_name(row.get("id"), index)
    sampling = args.sampling(row.get("sampling"))
    key = keys[index]
    if key in failures:
        return _dropped(name, failures[key], sampling)
    frames, stored = store.load(key)
    transformers_metadata = SampledVideo.from_metadata(
        torch.from_numpy(frames), stored
    ).transformers_metadata()
    video_metadata = {
        attribute: getattr(transformers_metadata, attribute)
        for attribute in _METADATA_FIELDS
        if getattr(transformers_metadata, attribute, None) is not None
    }
    video = CachedVideo(frames=torch.from_numpy(frames), metadata=video_metadata)
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
    return {
        "prompt_ids": prompt_ids,
        "chosen_ids": chosen_ids,
        "rejected_ids": rejected_ids,
        "frame_key": key,
        "frames_shape": list(frames.shape),
        "video_metadata": json.dumps(video_metadata),
        "num_vision_tokens": num_vision,
        "row_name": name,
        "drop_reason": "",
        "timestamps_check": _check_timestamps(row, sampling, stored),
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


def _check_timestamps(row: dict[str, Any], sampling: VideoSampling, sampled: dict[str, Any]) -> str:
    """Compare the re-sampled timestamps with the build's `frame_timestamps`, when the sampling is the build's.

    Returns `""` (nothing to compare), `"overridden"` (the run samples differently, so they may differ), `"match"`,
    or `"<reason>: <detail>"`. The tolerance is half a source frame: any more and it is another frame.
    """
    built = row.get("frame_timestamps") or []
    if not built or not row.get("sampling"):
        return _UNCHECKED
    if VideoSampling.from_dict(json.loads(row["sampling"])) != sampling:
        return _OVERRIDDEN
    now = sampled["timestamps"]
    if len(now) != len(built):
        return f"frame count differs from the build: {len(now)} sampled, {len(built)} in `frame_timestamps`"
    tolerance = 0.5 / sampled["source_fps"]
    for position, (got, want) in enumerate(zip(now, built, strict=True)):
        if abs(got - want) > tolerance:
            return (
                f"frame timestamps differ from the build: frame {position} at {got:.3f} s, built at {want:.3f} s "
                f"(tolerance {tolerance:.3f} s)"
            )
    return _MATCH


def _dropped(name: str, reason: str, sampling: VideoSampling) -> dict[str, Any]:
    return {
        "prompt_ids": [],
        "chosen_ids": [],
        "rejected_ids": [],
        "frame_key": "",
        "frames_shape": [],
        "video_metadata": "{}",
        "num_vision_tokens": 0,
        "row_name": name,
        "drop_reason": reason,
        "timestamps_check": _UNCHECKED,
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


def _select(
    prepared: Dataset, max_length: int | None, split: str, on_mismatch: str
) -> tuple[PreparationReport, list[int]]:
    columns = prepared.select_columns(list(REPORT_COLUMNS))
    reasons, checks = columns["drop_reason"], columns["timestamps_check"]
    lengths, names = columns["num_tokens"], columns["row_name"]
    report = PreparationReport(split, len(prepared), 0)
    keep: list[int] = []
    for index, (reason, check, length, name) in enumerate(zip(reasons, checks, lengths, names, strict=True)):
        if not reason and max_length is not None and length > max_length:
            reason = f"longer than max_length={max_length}"
            name = f"{name} ({length} tokens)"
        mismatch = check not in (_UNCHECKED, _OVERRIDDEN, _MATCH)
        if not reason and mismatch and on_mismatch == "drop":
            reason = check
        if reason:
            _count(report.dropped, report.examples, reason, name)
            continue
        keep.append(index)
        if mismatch:
            _count(report.warned, report.warning_examples, check, name)
    report.kept = len(keep)
    used = set(columns.select(keep)["sampling_used"]) if keep else set()
    if len(used) > 1:
        report.notes.append(
            f"{len(used)} different video samplings among the kept rows (from their `sampling` column)"
        )
    report.samplings = sorted(used)
    outcomes = Counter(checks)
    compared = len(checks) - outcomes[_UNCHECKED] - outcomes[_OVERRIDDEN]
    if compared:
        differ = compared - outcomes[_MATCH]
        kept_anyway = differ and on_mismatch == "warn"
        report.notes.append(
            f"frame timestamps: {compared} row(s) compared with the build's `frame_timestamps`, {differ} differ"
            + (" (kept; `frame_timestamps_mismatch: drop` drops them)" if kept_anyway else "")
        )
    if outcomes[_OVERRIDDEN]:
        report.notes.append(
            f"frame timestamps of {outcomes[_OVERRIDDEN]} row(s) not compared with the build's: the run's `video_*` "
            "settings change their sampling"
        )
    return report, keep


def _count(counter: Counter, examples: dict[str, list[str]], reason: str, name: str) -> None:
    """Count `reason` under its part before the first colon; keep the detail with the row's name."""
    key = reason.split(":")[0]
    counter[key] += 1
    examples.setdefault(key, []).append(
        name if key == reason else f"{name}: {reason.split(':', 1)[1].strip()}"
    )


def _advice(report: PreparationReport, max_length: int | None) -> str:
    tips = []
    if any(key.startswith("longer than") for key in report.dropped):
        tips.append(
            f"raise `max_length` (now {max_length}) or shrink the video tokens (`video_num_frames`, "
            "`video_max_pixels`)"
        )
    if "undecodable video" in report.dropped:
        tips.append("check the videos named above")
    if any(key.startswith("unresolvable video") for key in report.dropped):
        tips.append("check the video references named above (`video_root`, `allowed_local_media_path`)")
    if any(key.startswith(("frame count differs", "frame timestamps differ")) for key in report.dropped):
        tips.append(
            "check that the videos are the ones the data was built from, or set `frame_timestamps_mismatch: warn`"
        )
    return ("To fix: " + "; ".join(tips) + ".") if tips else ""


def _fingerprint(dataset: Dataset, processor: Any, args: VideoDPOConfig, references: VideoReferences) -> str:
    """Key of the prepared rows: what the rows are, how they are sampled and tokenized."""
    tokenizer = processor.tokenizer
    signature = {
        "version": CACHE_VERSION,
        "store_version": STORE_VERSION,  # the rows hold frame keys, which depend on it
        "dataset": dataset._fingerprint,
        "processor": processor.to_dict(),
        "tokenizer": [
            type(tokenizer).__name__,
            len(tokenizer),
            processor.chat_template or tokenizer.chat_template,
        ],
        "sampling_overrides": args.sampling_overrides(),
        "skip_bad_videos": args.skip_bad_videos,
        # Where relative cells resolve decides which files the frame keys name.
        "references": [
            references.dataset_dir,
            references.hub_dataset,
            references.video_root,
            references.archive,
        ],
    }
    blob = json.dumps(signature, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
