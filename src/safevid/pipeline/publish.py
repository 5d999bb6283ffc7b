"""Stage 6, publish: merge the shard stores into Parquet shards, dataset card and manifest; push to the Hub.

The publish pass streams the gated pairs of every shard store in id order (a k-way merge of sorted
cursors, so memory is one row group whatever the size), applies the set-level gates
(`safevid.pipeline.dedup`), and writes both configs from each row — ``default`` (flat columns) and
``conversational`` (TRL's preference format, `safevid.schema.to_conversational`) — with pyarrow
``ParquetWriter``s in bounded row groups::

    <output>/data/default/train-00000-of-00003.parquet
    <output>/data/conversational/train-00000-of-00003.parquet
    <output>/README.md                 dataset card: YAML configs, dataset_info, license, gating, tables
    <output>/safevid_manifest.json     config, models, revisions, prompt hashes, per-stage counts

Everything is written to a staging folder of its own first and swapped in at the end, so a killed
publish leaves the previous output (or none) and a rerun starts the pass over: it is cheap next to
generation. The caller holds the output folder's lock (`PUBLISH_LOCK_NAME`) meanwhile.

`push_to_hub` uploads the folder in batches of commits that skip files already on the Hub with the same
content, data first and the card last, so an interrupted push resumes where it stopped and the dataset
page never shows a card whose files are missing.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safevid.pipeline.context import BuildContext
from safevid.pipeline.dedup import SetGates
from safevid.pipeline.store import OK, Record, RecordStore
from safevid.schema import DEFAULT_COLUMNS, conversational_features, default_features, to_conversational

CONFIGS = ("default", "conversational")
MANIFEST_NAME = "safevid_manifest.json"
PUBLISH_LOCK_NAME = ".safevid-publish.lock"  # hidden, like the staging folders: never pushed to the Hub
_STAGING_PREFIX = ".publish-staging-"
_LENGTH_BINS = 4096  # words; longer replies count in the last bin


@dataclass
class LengthStats:
    """Streaming length statistics (in words) with fixed-size memory: count, mean, max and a histogram."""

    histogram: list[int] = field(default_factory=lambda: [0] * (_LENGTH_BINS + 1))
    count: int = 0
    total: int = 0
    maximum: int = 0

    def add(self, text: str) -> None:
        words = len(text.split())
        self.histogram[min(words, _LENGTH_BINS)] += 1
        self.count += 1
        self.total += words
        self.maximum = max(self.maximum, words)

    def quantile(self, q: float) -> int:
        target, running = q * self.count, 0
        for words, n in enumerate(self.histogram):
            running += n
            if running >= target and n:
                return words
        return self.maximum

    def summary(self) -> dict[str, float]:
        if not self.count:
            return {"count": 0}
        return {
            "count": self.count,
            "mean_words": round(self.total / self.count, 2),
            "p50_words": self.quantile(0.5),
            "p95_words": self.quantile(0.95),
            "max_words": self.maximum,
        }


@dataclass
class PublishResult:
    """What a publish pass wrote: rows per split, drops by reason, statistics."""

    output_dir: Path
    rows: dict[str, int]
    dropped: dict[str, int]
    counts: dict[str, dict[str, int]]
    lengths: dict[str, dict[str, float]]
    files: list[str]


def split_of(video_id: str, test_fraction: float) -> str:
    """``test`` for the fraction of videos (by hash) held out, ``train`` otherwise: no video is in both."""
    return "test" if int(video_id[:8], 16) / 0x100000000 < test_fraction else "train"


def merged_pairs(stores: list[RecordStore], dropped: Counter[str]) -> Iterator[tuple[Record, Record]]:
    """(gate record, pair record) over every store, in id order, one per id; repeats counted in ``dropped``."""

    def stream(index: int) -> Iterator[tuple[str, int, Record]]:
        for record in stores[index].iter_by_key("gate", OK):
            yield record.key, index, record

    streams = [stream(i) for i in range(len(stores))]
    last = None
    for key, index, gate in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
        if key == last:  # the same content ingested by two shards (same bytes under two sources)
            dropped["duplicate_across_shards"] += 1
            continue
        last = key
        pair = stores[index].get("pair", key)
        assert pair is not None, f"gate record {key} without its pair in {stores[index].path}"
        yield gate, pair


class ParquetShardWriter:
    """Streams the rows of one split into Parquet shards, with bounded row groups and shard sizes.

    Rows are buffered and written in row groups of at most ``rows_per_group`` rows, into files
    ``<split>-<i>.parquet`` of at most ``rows_per_shard`` rows, renamed ``<split>-<i>-of-<n>.parquet``
    by `close`. ``rows`` and ``bytes`` count what was written (for the card's split sizes).

    Args:
        folder (`Path`): Where the files go (created on the first write).
        split (`str`): The split name, the files' prefix.
        schema (`pyarrow.Schema`): The rows' schema (e.g. ``datasets.Features.arrow_schema``).
        rows_per_shard (`int`): Rows per file.
        rows_per_group (`int`): Rows per Parquet row group.
    """

    def __init__(
        self, folder: Path, split: str, schema: Any, rows_per_shard: int, rows_per_group: int
    ) -> None:
        self.folder, self.split, self.schema = folder, split, schema
        self.rows_per_shard, self.rows_per_group = rows_per_shard, rows_per_group
        self.buffer: list[dict[str, Any]] = []
        self.writer: Any = None
        self.in_file = 0
        self.files: list[Path] = []
        self.rows = 0
        self.bytes = 0

    def add(self, row: dict[str, Any]) -> bool:
        """Buffer a row; returns whether a row group was flushed."""
        self.buffer.append(row)
        if len(self.buffer) >= self.rows_per_group or self.in_file + len(self.buffer) >= self.rows_per_shard:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.buffer:
            return
        if self.writer is None:
            path = self.folder / f"{self.split}-{len(self.files):05d}.parquet"
            self.folder.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, self.schema)
            self.files.append(path)
        table = pa.Table.from_pylist(self.buffer, schema=self.schema)
        self.writer.write_table(table, row_group_size=len(self.buffer))
        self.in_file += len(self.buffer)
        self.rows += len(self.buffer)
        self.bytes += table.nbytes
        self.buffer = []
        if self.in_file >= self.rows_per_shard:
            self.writer.close()
            self.writer, self.in_file = None, 0

    def close(self) -> list[Path]:
        """Flush, close, and rename the files to ``<split>-<i>-of-<n>.parquet``."""
        self.flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        total = len(self.files)
        final = []
        for i, path in enumerate(self.files):
            target = path.with_name(f"{self.split}-{i:05d}-of-{total:05d}.parquet")
            path.rename(target)
            final.append(target)
        return final


def _video_cell(pair: dict[str, Any], embed: bool) -> Any:
    path = Path(pair["video_path"])
    if not embed:
        return str(path)
    return {"bytes": path.read_bytes(), "path": f"{pair['row']['video_id']}{pair['video_suffix']}"}


def publish(
    ctx: BuildContext, store_paths: list[Path], *, fingerprint: str, manifest: dict[str, Any]
) -> PublishResult:
    """Merge the shard stores into the dataset folder (see the module docstring)."""
    from safevid.pipeline.card import write_card

    config = ctx.config
    cfg = config.publish
    output = Path(config.output_dir)
    # Staged in the output folder (same file system: the swap is renames), in a folder of this publish's own.
    output.mkdir(parents=True, exist_ok=True)
    for leftover in output.glob(f"{_STAGING_PREFIX}*"):  # a killed publish's (the caller holds the lock)
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=output))
    stores = [RecordStore(path, readonly=True) for path in store_paths]
    try:
        for store, path in zip(stores, store_paths, strict=True):
            if store.get_meta("fingerprint") != fingerprint:
                raise RuntimeError(
                    f"Shard store {path} was built with another configuration (fingerprint "
                    f"{(store.get_meta('fingerprint') or 'none')[:12]} != {fingerprint[:12]}); refusing to mix them."
                )
        gates = SetGates(
            config.gates.dedup, config.gates.decontaminate, staging / "index", config.resolve_path
        )
        schemas = {
            "default": default_features(cfg.embed_videos).arrow_schema,
            "conversational": conversational_features(cfg.embed_videos).arrow_schema,
        }
        writers: dict[tuple[str, str], ParquetShardWriter] = {}
        dropped: Counter[str] = Counter()
        counts: dict[str, Counter[str]] = {
            "domain": Counter(),
            "subcategory": Counter(),
            "query_style": Counter(),
        }
        lengths = {"chosen": LengthStats(), "rejected": LengthStats(), "prompt": LengthStats()}
        candidates = 0
        for _gate, pair in merged_pairs(stores, dropped):
            candidates += 1
            row = dict(pair.data["row"])
            problem = gates.check(row)
            if problem is not None:
                dropped[problem[0]] += 1
                continue
            row["video"] = _video_cell(pair.data, cfg.embed_videos)
            row = {name: row[name] for name in DEFAULT_COLUMNS}
            split = split_of(row["video_id"], cfg.test_fraction)
            flushed = False
            for name, converted in (("default", row), ("conversational", to_conversational(row))):
                writer = writers.get((name, split))
                if writer is None:
                    folder = staging / "data" / name
                    writer = writers[(name, split)] = ParquetShardWriter(
                        folder, split, schemas[name], cfg.rows_per_shard, cfg.rows_per_row_group
                    )
                flushed |= writer.add(converted)
            if flushed:
                ctx.checkpoint("publish:row_group")
            for column in counts:
                counts[column][row[column]] += 1
            for column in lengths:
                lengths[column].add(row[column])
        gates.close()
        files: dict[str, dict[str, list[Path]]] = {name: {} for name in CONFIGS}
        split_bytes: dict[str, dict[str, int]] = {name: {} for name in CONFIGS}
        rows: Counter[str] = Counter()
        for (name, split), writer in sorted(writers.items()):
            files[name][split] = writer.close()
            split_bytes[name][split] = writer.bytes
            if name == "default":
                rows[split] = writer.rows
        dropped = Counter({k: v for k, v in dropped.items() if v})
        summary = {
            "candidates": candidates,
            "rows": dict(rows),
            "dropped": dict(sorted(dropped.items())),
            "counts": {k: dict(sorted(v.items())) for k, v in counts.items()},
            "lengths": {k: v.summary() for k, v in lengths.items()},
        }
        manifest = {
            **manifest,
            "publish": summary,
            "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / MANIFEST_NAME).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        write_card(ctx, staging / "README.md", manifest=manifest, files=files, split_bytes=split_bytes)
        ctx.checkpoint("publish:before_swap")
        swap_in_staged(staging, output)
        ctx.checkpoint("publish:after_swap")
    finally:
        for store in stores:
            store.close()
        shutil.rmtree(staging, ignore_errors=True)
    written = sorted(str(p.relative_to(output)) for p in (output / "data").rglob("*.parquet"))
    return PublishResult(
        output,
        dict(rows),
        dict(dropped),
        summary["counts"],
        summary["lengths"],
        [*written, "README.md", MANIFEST_NAME],
    )


def swap_in_staged(staging: Path, output: Path) -> None:
    """Replace the output's ``data/`` folder, ``README.md`` and manifest by the ones staged in ``staging``.

    Everything is written to ``staging`` first and moved in by renames, so a build killed while writing
    leaves the previous output whole. ``staging`` is removed afterwards.

    Args:
        staging (`Path`): The folder holding the new ``data/``, ``README.md`` and `MANIFEST_NAME`.
        output (`Path`): The dataset folder to update (created if missing).
    """
    output.mkdir(parents=True, exist_ok=True)
    old = staging.with_name(f"{staging.name}-previous")
    shutil.rmtree(old, ignore_errors=True)
    if (output / "data").exists():
        os.replace(output / "data", old)
    if (staging / "data").exists():
        os.replace(staging / "data", output / "data")
    for name in (MANIFEST_NAME, "README.md"):
        os.replace(staging / name, output / name)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)


# --- Hub ---------------------------------------------------------------------------------------------
@dataclass
class PushResult:
    """What `push_to_hub` did: the repository, the files uploaded, skipped (unchanged) and deleted, the commits."""

    repo_id: str
    uploaded: list[str]
    skipped: list[str]
    deleted: list[str]
    commits: int


def push_to_hub(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    files_per_commit: int = 50,
    token: str | None = None,
) -> PushResult:
    """Upload a published dataset folder in resumable, atomic commits.

    Each commit carries at most ``files_per_commit`` files; a file already on the Hub with the same
    content (LFS SHA-256, or git blob id for small files) is skipped, so rerunning after an interruption
    uploads only what is missing. Data files go first; the card and manifest go last, together with the
    deletion of data files a previous build left that this one does not have. The build state
    (``.safevid-build``) is never uploaded. The token comes from ``token`` or the environment.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    folder = Path(folder)
    if not (folder / "README.md").exists():
        raise FileNotFoundError(f"{folder} has no README.md: publish the build before pushing it")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    remote: dict[str, tuple[str | None, str | None]] = {}
    for entry in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True):
        if getattr(entry, "blob_id", None) is not None:
            lfs = getattr(entry, "lfs", None)
            remote[entry.path] = (entry.blob_id, lfs.sha256 if lfs else None)
    local = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    uploaded, skipped = [], []
    todo = []
    for path in local:
        data_path = folder / path
        if path in remote and _same_content(data_path, *remote[path]):
            skipped.append(path)
        else:
            todo.append(path)
    last_names = {"README.md", MANIFEST_NAME}
    data_first = [p for p in todo if p not in last_names]
    commits = 0
    for start in range(0, len(data_first), files_per_commit):
        batch = data_first[start : start + files_per_commit]
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in batch]
        api.create_commit(repo_id, operations, commit_message=f"Add data files ({start + len(batch)}/{len(data_first)})",
                          repo_type="dataset")  # fmt: skip
        uploaded += batch
        commits += 1
    stale = sorted(p for p in remote if p.startswith("data/") and p not in set(local))
    final_ops: list[Any] = [
        CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in todo if p in last_names
    ]
    final_ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
    if final_ops:
        api.create_commit(
            repo_id, final_ops, commit_message="Update dataset card and manifest", repo_type="dataset"
        )
        uploaded += [p for p in todo if p in last_names]
        commits += 1
    return PushResult(repo_id, uploaded, skipped, stale, commits)


def _same_content(path: Path, blob_id: str | None, lfs_sha256: str | None) -> bool:
    from safevid.video.frame_store import file_sha256

    if lfs_sha256 is not None:
        return file_sha256(path) == lfs_sha256
    data = path.read_bytes()
    # A small file's git blob id: SHA-1 of "blob <size>\0" + content.
    return blob_id == hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()
