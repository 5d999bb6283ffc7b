"""Stage 0, ingest: video sources → probed, sampled video records keyed by the hash of their bytes.

Sources, each turned into items with a stable source key:

- a local folder (recursive; hidden files skipped; a file that is not a video is recorded, not ignored),
- a list file of local paths (relative to the list file) and ``http(s)://`` URLs, one per line, ``#`` comments,
- a Hub or local dataset with a video column (streamed; each cell resolved by `safevid.video.references`:
  bytes, paths relative to the dataset, ``http(s)://`` URLs, tar archive members; absolute paths and paths
  climbing out with ``..`` are refused unless under `allowed_local_media_path`, and never read),
- ``test_videos: N`` synthetic videos (demos and tests), written by the ``test_videos`` video source
  (`safevid.plugins`).

Each item is assigned to a shard by the hash of its source key before it is opened or stat'ed (a dataset's rows
by their data file), so no task touches another task's sources; a launcher lists folder inputs once into a
plan (`write_plan`) that each task reads its share from. The key never holds a machine's absolute path — a
file's is its input's index and its path relative to the input folder (or list file line as written) — so
nodes mounting the inputs at different places partition them the same way. Each item is then read, hashed (video id = SHA-256 of the
bytes) in the main process, then probed and sampled with the shared `VideoSampling` in the build's decode
worker processes, ahead and in parallel; the frames go to the build's frame store, decoded once for the whole
build (`safevid.pipeline.frames`). A bad item — malformed list line, missing file,
failed download, undecodable video, duplicate content — is recorded as dropped with its reason and the source
named, and skipped.

A URL is downloaded once (a rerun skips finished sources) into the build state (a list file's into the
content-addressed ``videos/`` folder, a dataset cell's into ``media/``), refused past `MAX_DOWNLOAD_BYTES` or
`DOWNLOAD_DEADLINE_S` (``download_failed``, with the limit named): download such a file yourself and list its
local path instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safevid.backends.prepared import prepare_video
from safevid.pipeline.batching import pending
from safevid.pipeline.config import BuildConfig, InputSpec
from safevid.pipeline.context import BuildContext, shard_of, stable_hash
from safevid.pipeline.frames import frames_root
from safevid.pipeline.store import DROPPED, OK, Record, RecordStore
from safevid.video.frame_store import file_sha256
from safevid.video.references import (
    DOWNLOAD_DEADLINE_S,
    MAX_DOWNLOAD_BYTES,
    VideoReferenceError,
    VideoReferences,
    download,
)

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".gif")
STAGE = "video"
SOURCE_STAGE = "source"
logger = logging.getLogger(__name__)


@dataclass
class SourceItem:
    """One video to ingest, or a problem found while listing sources (``problem`` set)."""

    key: str  # stable identity of the source: input and relative path, URL, dataset row, list-file line
    name: str  # printable name for messages
    path: Path | None = None
    url: str | None = None
    data: bytes | None = None
    suffix: str = ".mp4"
    cell: Any = None  # an untrusted dataset video cell, read only through `references`
    references: VideoReferences | None = None
    problem: tuple[str, str] | None = None  # (reason code, message)


def iter_sources(ctx: BuildContext) -> Iterator[SourceItem]:
    """This shard's source items of the config's inputs, in a deterministic order.

    A source's shard is decided from its key before anything else is done with it: no file of another shard is
    opened or stat'ed, no row of another shard's dataset files is read. A folder is listed from the launcher's
    plan when there is one (`write_plan`), so the task does not walk the folder either.
    """
    plan = _read_plan(ctx.config, ctx.shard, ctx.num_shards)

    def mine(key: str) -> bool:
        return shard_of(key, ctx.num_shards) == ctx.shard

    for index, spec in enumerate(ctx.config.inputs):
        if spec.folder is not None or spec.test_videos is not None:
            folder = _folder_of(ctx.config, index, spec)
            names = plan[str(index)] if plan is not None else _list_folder(folder)
            yield from _folder_items(folder, index, (n for n in names if mine(_file_key(index, n))))
        elif spec.list_file is not None:
            yield from _list_items(ctx.config.resolve_path(spec.list_file), index, mine)
        else:
            yield from _dataset_items(ctx, spec, mine)


def write_plan(config: BuildConfig, num_shards: int) -> Path:
    """List the folder inputs once, for ``num_shards`` tasks: each task then reads only its own file names.

    Written by the launcher (`safevid.pipeline.engine`) before the tasks start, and rewritten on every launch (a
    folder that gained files is planned again; a file's shard never changes). Also writes ``test_videos`` inputs,
    so that concurrent tasks do not race to write them. Returns the plan folder.
    """
    folder = config.work_path / "plan"
    folder.mkdir(parents=True, exist_ok=True)
    shares: list[dict[str, list[str]]] = [{} for _ in range(num_shards)]
    for index, spec in enumerate(config.inputs):
        if spec.folder is None and spec.test_videos is None:
            continue  # a list file is one file to read; a dataset is split by its data files
        for share in shares:
            share[str(index)] = []
        for name in _list_folder(_folder_of(config, index, spec)):
            shares[shard_of(_file_key(index, name), num_shards)][str(index)].append(name)
    for shard, share in enumerate(shares):
        path = _plan_path(config, shard, num_shards)
        tmp = path.with_suffix(".part")
        tmp.write_text(json.dumps({"inputs": share}), encoding="utf-8")
        tmp.replace(path)
    return folder


def _plan_path(config: BuildConfig, shard: int, num_shards: int) -> Path:
    return config.work_path / "plan" / f"shard-{shard:05d}-of-{num_shards:05d}.json"


def _read_plan(config: BuildConfig, shard: int, num_shards: int) -> dict[str, list[str]] | None:
    path = _plan_path(config, shard, num_shards)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["inputs"]


def _folder_of(config: BuildConfig, index: int, spec: InputSpec) -> Path:
    if spec.folder is not None:
        return config.resolve_path(spec.folder)
    return _test_videos(config, index, spec)


def _file_key(input_index: int, relative: str) -> str:
    return f"file:{input_index}:{relative}"


def _list_folder(folder: Path) -> list[str]:
    """The relative paths (POSIX) of a folder's files, hidden ones left out, from directory entries only.

    ``os.walk`` reads the file types from the directory listing: no file is opened or stat'ed, so listing costs
    the same whichever share of the files a task keeps.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"Input folder {folder} does not exist")
    names: list[tuple[str, ...]] = []
    for root, dirs, files in os.walk(folder):
        # hidden files and folders (editor swap files, .DS_Store) are not inputs
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        parts = Path(root).relative_to(folder).parts
        names += [(*parts, f) for f in files if not f.startswith(".")]
    return ["/".join(parts) for parts in sorted(names)]


def _folder_items(folder: Path, input_index: int, names: Iterable[str]) -> Iterator[SourceItem]:
    for relative in names:
        path = folder / relative
        item = SourceItem(
            key=_file_key(input_index, relative), name=str(path), path=path, suffix=path.suffix.lower()
        )
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            item.problem = ("not_a_video_file", f"{path}: extension {path.suffix!r} is not a video extension")
        yield item


def _list_items(list_file: Path, input_index: int, mine: Callable[[str], bool]) -> Iterator[SourceItem]:
    if not list_file.is_file():
        raise FileNotFoundError(f"Input list file {list_file} does not exist")
    with list_file.open(encoding="utf-8", errors="replace") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name = f"{list_file}:{number}"
            scheme = urllib.parse.urlsplit(line).scheme.lower()
            if scheme in ("http", "https"):
                if mine(f"url:{line}"):
                    suffix = Path(urllib.parse.urlsplit(line).path).suffix.lower() or ".mp4"
                    yield SourceItem(key=f"url:{line}", name=f"{name} ({line})", url=line, suffix=suffix)
                continue
            item = SourceItem(key=f"list:{input_index}:{line}", name=f"{name} ({line})")
            if not mine(item.key):
                continue
            if "://" in line or "\t" in line or any(ord(c) < 32 for c in line):
                item.problem = (
                    "malformed_list_line",
                    f"{name}: {line!r} is neither a local path nor an http(s) URL; fix or remove the line",
                )
                yield item
                continue
            path = Path(line.removeprefix("file:")).expanduser()
            path = path if path.is_absolute() else list_file.parent / path
            item.path, item.suffix = path, path.suffix.lower() or ".mp4"
            if not path.is_file():
                item.problem = ("missing_file", f"{name}: no file {path}")
            yield item


def _dataset_items(ctx: BuildContext, spec: InputSpec, mine: Callable[[str], bool]) -> Iterator[SourceItem]:
    """This shard's rows of a dataset input, split by its data files where it has at least one per shard.

    A row's key is its data file's index and its row in that file, so each task streams only its own files
    (file ``j`` goes to task ``j % num_shards``). With fewer files than shards every task streams them all and
    keeps the rows whose key hashes to it (logged: reshard the dataset into more files).
    """
    from datasets import Video, load_dataset

    assert spec.dataset is not None
    local = ctx.config.resolve_path(spec.dataset)
    location = str(local) if local.exists() else spec.dataset
    dataset = load_dataset(location, spec.dataset_config, split=spec.split, streaming=True)
    if spec.video_column not in (dataset.features or {}):
        raise ValueError(
            f"Dataset {spec.dataset} ({spec.split}) has no column {spec.video_column!r}; "
            f"columns: {sorted(dataset.features or {})}. Set inputs[].video_column."
        )
    dataset = dataset.cast_column(spec.video_column, Video(decode=False)).select_columns([spec.video_column])
    references = VideoReferences(
        dataset_dir=str(local) if local.exists() else None,
        hub_dataset=None if local.exists() else spec.dataset,
        video_root=str(ctx.config.resolve_path(spec.video_root)) if spec.video_root else None,
        allowed_local_media_path=tuple(
            str(ctx.config.resolve_path(p)) for p in spec.allowed_local_media_path
        ),
        cache_dir=str(ctx.config.work_path / "media"),
    )
    files = dataset.num_shards
    by_file = files >= ctx.num_shards
    if not by_file:
        logger.warning(
            "dataset %s has %d data file(s) for %d shards: every shard streams all of it; "
            "reshard it into >= %d files so that each task reads only its own",
            spec.dataset, files, ctx.num_shards, ctx.num_shards,
        )  # fmt: skip
    for file in range(files):
        if by_file and file % ctx.num_shards != ctx.shard:
            continue
        for row_index, row in enumerate(dataset.shard(files, file, contiguous=True)):
            key = f"dataset:{spec.dataset}:{spec.dataset_config}:{spec.split}:{file}:{row_index}"
            if not by_file and not mine(key):
                continue
            value = row[spec.video_column] or {}
            name = f"{spec.dataset} [{spec.split}] file {file} row {row_index}"
            if value.get("path") and not value.get("bytes"):
                name = f"{name} ({value['path']})"
            suffix = Path(urllib.parse.urlsplit(value.get("path") or "x.mp4").path).suffix.lower() or ".mp4"
            yield SourceItem(key=key, name=name, cell=value, references=references, suffix=suffix)


def _test_videos(config: BuildConfig, index: int, spec: InputSpec) -> Path:
    """Have the installed ``test_videos`` video source write ``spec.test_videos`` videos, once."""
    from safevid.plugins import VIDEO_SOURCES, load_plugin

    folder = config.work_path / "test-videos" / f"input-{index}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        load_plugin(VIDEO_SOURCES, "test_videos")(folder, spec.test_videos or 0)
        done.touch()
    return folder


def _materialise(ctx: BuildContext, item: SourceItem) -> Path:
    """A local file with the item's bytes: the file itself, or a content-addressed copy in the work dir."""
    if item.path is not None:
        return item.path
    if item.references is not None:
        resolved = item.references.resolve(item.cell, row_name=item.name)
        if isinstance(resolved, Path):
            return resolved
        item.data = resolved
    store = ctx.config.work_path / "videos"
    store.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=store, suffix=".part")
    try:
        with open(fd, "wb") as f:
            if item.data is not None:
                f.write(item.data)
                digest = hashlib.sha256(item.data).hexdigest()
            else:
                assert item.url is not None
                digest = download(item.url, f, max_bytes=MAX_DOWNLOAD_BYTES, deadline_s=DOWNLOAD_DEADLINE_S)
        target = store / f"{digest}{item.suffix}"
        Path(tmp).replace(target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


DECODE_VIDEO = "safevid.pipeline.ingest:decode_video"


@dataclass(frozen=True)
class _ToDecode:
    """A source read and hashed in the main process, on its way to a decode worker."""

    item: SourceItem
    source_key: str
    path: Path
    video_id: str


def decode_video(
    root: str, video_id: str, path: str, sampling: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """In a decode worker: ``(probe, sampled metadata, decoded)`` of a video, its frames in the build's frame store.

    Decoded once: describe and the target model's replies read these frames back (`safevid.pipeline.frames`), and a
    rerun after a kill finds them there instead of decoding again.
    """
    from safevid.video import VideoSampling, probe_video

    probe = probe_video(
        path, VideoSampling.from_dict({**sampling, "timeout_s": None})
    )  # the pool bounds the call
    prepared = prepare_video(root, video_id, path, sampling, encoding=None)
    return probe.to_dict(), prepared.metadata, prepared.decoded


def _read(ctx: BuildContext, item: SourceItem) -> _ToDecode | Record:
    """The item materialised as a local file and hashed, or the record of why it was dropped."""
    source_key = stable_hash("source", item.key)
    if item.problem is not None:
        return _dropped(source_key, item, *item.problem)
    try:
        path = _materialise(ctx, item)
    except VideoReferenceError as e:
        return _dropped(source_key, item, e.reason, str(e))
    except OSError as e:  # urllib's URLError and HTTPError are OSErrors
        return _dropped(source_key, item, "download_failed", f"{item.name}: {e}")
    try:
        video_id = file_sha256(path)
    except OSError as e:
        return _dropped(source_key, item, "unreadable_file", f"{item.name}: {e}")
    return _ToDecode(item, source_key, path, video_id)


def _dropped(source_key: str, item: SourceItem, reason: str, message: str, video_id: str = "") -> Record:
    data = {"source": item.name, "reason": reason, "message": message}
    return Record(SOURCE_STAGE, source_key, video_id, DROPPED, reason, data)


def _ingested(job: _ToDecode, outcome: Any) -> list[Record]:
    """The source and video records of a decoded video, or the source record of why it did not decode."""
    from safevid.video import VideoDecodeError

    if isinstance(outcome, VideoDecodeError):
        return [
            _dropped(job.source_key, job.item, "decode_error", f"{job.item.name}: {outcome}", job.video_id)
        ]
    if isinstance(outcome, BaseException):  # not the video's fault (a full disk, a bug): stop the build
        raise outcome
    probe, metadata, _ = outcome
    video = {
        "video_id": job.video_id,
        "source": job.item.name,
        "path": str(job.path.resolve()),
        "suffix": job.item.suffix,
        "size_bytes": job.path.stat().st_size,
        "probe": probe,
        "frame_timestamps": metadata["timestamps"],
        "sampled_fps": metadata["sampled_fps"],
        "duration": metadata["duration"],
    }
    source = {"source": job.item.name, "video_id": job.video_id}
    return [
        Record(SOURCE_STAGE, job.source_key, job.video_id, OK, None, source),
        Record(STAGE, job.video_id, job.video_id, OK, None, video),
    ]


def run_ingest(ctx: BuildContext, store: RecordStore, *, batch_size: int = 64) -> None:
    """Ingest this shard's sources that are not in the store yet.

    Each source is read and hashed here (downloads, archive members), then probed and sampled in the build's
    decode pool (`BuildContext.decode_pool`), ahead and in parallel; records are committed every ``batch_size``
    as they land. A source with the bytes of a video already ingested, or on its way, is dropped as a
    duplicate without decoding.
    """
    records: list[Record] = []
    first_source: dict[str, str] = {}  # video id -> the source that brought it in this run
    sampling, root = ctx.config.video_sampling.to_dict(), str(frames_root(ctx))
    decodes: Counter[bool] = Counter()

    def to_decode() -> Iterator[_ToDecode]:
        for item in pending(store, iter_sources(ctx), SOURCE_STAGE, lambda i: stable_hash("source", i.key)):
            job = _read(ctx, item)
            if isinstance(job, Record):
                records.append(job)
                continue
            first = first_source.get(job.video_id)
            if first is not None or store.get(STAGE, job.video_id) is not None:
                message = (
                    f"{item.name}: same bytes as {first or 'an already ingested video'} ({job.video_id[:12]})"
                )
                records.append(_dropped(job.source_key, item, "duplicate_video", message, job.video_id))
                continue
            first_source[job.video_id] = item.name
            yield job

    def commit() -> None:
        if records:
            ctx.checkpoint("ingest:before_commit")
            store.put_many(records)
            records.clear()
            ctx.checkpoint("ingest:after_commit")

    decoded = ctx.decode_pool().imap_unordered(
        DECODE_VIDEO,
        to_decode(),
        lambda job: (root, job.video_id, str(job.path), sampling),
        name_of=lambda job: job.item.name,
    )
    for job, outcome in decoded:
        records.extend(_ingested(job, outcome))
        if isinstance(outcome, tuple):
            decodes[outcome[2]] += 1
        if len(records) >= batch_size:
            commit()
    commit()
    logger.info("ingest: %d video(s) decoded, %d found in the frame store", decodes[True], decodes[False])


def video_record(store: RecordStore, video_id: str) -> dict[str, Any]:
    """The ingest record of ``video_id`` (path, probe, frame timestamps...); `KeyError` if not ingested."""
    record = store.get(STAGE, video_id)
    if record is None:
        raise KeyError(f"No ingested video {video_id} in {store.path}")
    return record.data
