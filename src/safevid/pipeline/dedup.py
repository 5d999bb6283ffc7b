"""Set-level gates of the publish pass: exact and near-duplicate queries, benchmark decontamination.

Near duplicates are found with MinHash (`datasketch`) and banded locality-sensitive hashing, with the
band buckets and signatures kept in SQLite instead of memory, so the index of 350,000 queries costs
disk, not RAM. Pairs are visited in id order, so the first of a group of duplicates (by id) is kept,
whichever worker or shard produced it: a sharded build gates exactly like a single worker.

Decontamination indexes a benchmark split: its video ids (the SHA-256 of the video bytes, as ours, or
a ``video_id`` column) and its queries. A pair sharing a video with the benchmark, or whose query is a
near duplicate of a benchmark query, is dropped.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from safevid.pipeline.config import DecontaminationConfig, DedupConfig

_WORD = re.compile(r"\w+", re.UNICODE)


def normalise(text: str) -> str:
    """Lowercase words only: what makes two queries "the same" for exact deduplication."""
    return " ".join(_WORD.findall(text.lower()))


class QueryIndex:
    """Exact and MinHash-LSH near-duplicate lookups over texts, stored in a SQLite file.

    Args:
        path: The SQLite file (created; an existing one is reused, so build it once and query it).
        threshold: Estimated Jaccard similarity (of word shingles) from which two texts are near duplicates.
        num_perm: MinHash permutations.
        shingle: Words per shingle.
    """

    def __init__(
        self, path: str | Path, *, threshold: float = 0.85, num_perm: int = 64, shingle: int = 3
    ) -> None:
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.num_perm, self.shingle = threshold, num_perm, shingle
        # Drawing the permutations is most of a MinHash's construction cost: draw them once.
        template = MinHash(num_perm=num_perm, seed=1)
        self._permutations, self._scheme = template.permutations, template.scheme
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)  # only for its optimal (bands, rows)
        self.bands, self.rows = lsh.b, lsh.r
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=OFF")  # rebuilt from scratch by every publish pass
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS exact (scope TEXT, digest TEXT, key TEXT, PRIMARY KEY (scope, digest)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS buckets (bucket TEXT, key TEXT);
            CREATE INDEX IF NOT EXISTS buckets_by_bucket ON buckets (bucket);
            CREATE TABLE IF NOT EXISTS signatures (key TEXT PRIMARY KEY, signature BLOB) WITHOUT ROWID;
            """
        )
        self.conn.execute("BEGIN")

    def signature(self, text: str) -> np.ndarray:
        from datasketch import MinHash

        words = normalise(text).split()
        n = self.shingle
        shingles = {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}
        minhash = MinHash(
            num_perm=self.num_perm, seed=1, permutations=self._permutations, scheme=self._scheme
        )
        minhash.update_batch([s.encode() for s in shingles])
        return minhash.hashvalues

    def _buckets(self, scope: str, signature: np.ndarray) -> list[str]:
        return [
            hashlib.blake2b(
                scope.encode() + signature[b * self.rows : (b + 1) * self.rows].tobytes(), digest_size=12
            ).hexdigest()
            + f":{b}"
            for b in range(self.bands)
        ]

    def exact_match(self, scope: str, text: str) -> str | None:
        row = self.conn.execute(
            "SELECT key FROM exact WHERE scope = ? AND digest = ?", (scope, _digest(text))
        ).fetchone()
        return None if row is None else row[0]

    def near_match(
        self, scope: str, text: str, signature: np.ndarray | None = None
    ) -> tuple[str, float] | None:
        """The first indexed text in ``scope`` whose estimated Jaccard similarity reaches the threshold."""
        signature = self.signature(text) if signature is None else signature
        seen: set[str] = set()
        for bucket in self._buckets(scope, signature):
            for (key,) in self.conn.execute("SELECT key FROM buckets WHERE bucket = ?", (bucket,)):
                if key in seen:
                    continue
                seen.add(key)
                (blob,) = self.conn.execute(
                    "SELECT signature FROM signatures WHERE key = ?", (key,)
                ).fetchone()
                similarity = float(np.mean(np.frombuffer(blob, dtype=signature.dtype) == signature))
                if similarity >= self.threshold:
                    return key, similarity
        return None

    def add(self, scope: str, key: str, text: str, signature: np.ndarray | None = None) -> None:
        signature = self.signature(text) if signature is None else signature
        self.conn.execute("INSERT OR IGNORE INTO exact VALUES (?, ?, ?)", (scope, _digest(text), key))
        self.conn.execute("INSERT OR REPLACE INTO signatures VALUES (?, ?)", (key, signature.tobytes()))
        self.conn.executemany(
            "INSERT INTO buckets VALUES (?, ?)", [(b, key) for b in self._buckets(scope, signature)]
        )

    def close(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


def _digest(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()


class SetGates:
    """The publish pass's set-level gates, applied to pairs in id order.

    Args:
        dedup: Deduplication settings.
        decontaminate: The benchmark to decontaminate against (``dataset: null``: none).
        folder: Where the on-disk indexes live (a fresh folder per publish pass).
        resolve: Turns a config path into a local path (next to the config file, else the working dir).
    """

    def __init__(
        self, dedup: DedupConfig, decontaminate: DecontaminationConfig, folder: Path, resolve: Any = Path
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.dedup = dedup
        self.queries = QueryIndex(
            folder / "queries.sqlite", threshold=dedup.near_threshold or 1.0, num_perm=dedup.num_perm,
            shingle=dedup.shingle,
        )  # fmt: skip
        self.bench: QueryIndex | None = None
        self.bench_videos: set[str] = set()
        self.bench_rows = 0
        if decontaminate.dataset:
            self.bench = QueryIndex(
                folder / "benchmark.sqlite", threshold=decontaminate.near_threshold, num_perm=dedup.num_perm,
                shingle=dedup.shingle,
            )  # fmt: skip
            for index, (video_id, query) in enumerate(iter_video_ids_and_queries(decontaminate, resolve)):
                self.bench_rows += 1
                if video_id:
                    self.bench_videos.add(video_id)
                if query:
                    self.bench.add("bench", f"bench-{index}", query)

    def check(self, row: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The drop reason and details for a pair, or `None` (and the pair is indexed) if it passes."""
        query = row["prompt"]
        if row["video_id"] in self.bench_videos:
            return "contaminated_video", {"video_id": row["video_id"]}
        if self.bench is not None and (
            self.bench.exact_match("bench", query) or self.bench.near_match("bench", query)
        ):
            return "contaminated_query", {}
        scope = row["video_id"] if self.dedup.scope == "video" else "global"
        if self.dedup.exact and (other := self.queries.exact_match(scope, query)):
            return "duplicate_query", {"duplicate_of": other}
        signature = self.queries.signature(query)
        if self.dedup.near_threshold is not None and (
            found := self.queries.near_match(scope, query, signature)
        ):
            return "near_duplicate_query", {"duplicate_of": found[0], "similarity": round(found[1], 3)}
        self.queries.add(scope, row["id"], query, signature)
        return None

    def close(self) -> None:
        self.queries.close()
        if self.bench is not None:
            self.bench.close()


def iter_video_ids_and_queries(
    spec: DecontaminationConfig, resolve: Any, *, queries: bool = True
) -> Iterator[tuple[str | None, str | None]]:
    """Yield ``(video id, query)`` for every row of the dataset ``spec`` names, streaming.

    The video id is read from ``spec.video_id_column`` when the dataset has it, else it is the SHA-256
    of the video bytes (as ingest computes it), else `None`. Video cells are read only through
    `safevid.video.references` (relative to the dataset; absolute paths never read): a cell it cannot
    resolve gives `None`, and their count is logged with the first cause.

    Args:
        spec (`DecontaminationConfig`): The dataset (Hub id or folder), config, split and column names.
        resolve (`Callable[[str], Path]`): Resolves a local folder path (a config's ``resolve_path``).
        queries (`bool`, defaults to `True`): Read the query column; with `False` the query is always `None`
            and the dataset needs no query column (excluding videos needs only their ids).

    Raises:
        ValueError: The dataset has no ``spec.query_column`` (and `queries` is set).
    """
    from datasets import Video, load_dataset

    from safevid.video.frame_store import content_sha256
    from safevid.video.references import VideoReferenceError, VideoReferences

    assert spec.dataset is not None
    local = resolve(spec.dataset)
    location = str(local) if Path(local).exists() else spec.dataset
    dataset = load_dataset(location, spec.dataset_config, split=spec.split, streaming=True)
    columns = set(dataset.features or {})
    if queries and spec.query_column not in columns:
        raise ValueError(
            f"{spec.dataset} has no query column {spec.query_column!r}; columns: {sorted(columns)}. "
            "Set `query_column` in this dataset's entry."
        )
    has_id = spec.video_id_column is not None and spec.video_id_column in columns
    has_video = spec.video_column in columns
    if has_video and not has_id:
        dataset = dataset.cast_column(spec.video_column, Video(decode=False))
    exists = Path(local).exists()
    references = VideoReferences(
        dataset_dir=location if exists else None, hub_dataset=None if exists else location
    )
    unresolved: list[str] = []
    for index, row in enumerate(dataset):
        video_id = None
        if has_id:
            video_id = row[spec.video_id_column]
        elif has_video and row[spec.video_column]:
            try:
                resolved = references.resolve(row[spec.video_column], row_name=f"{spec.dataset} row {index}")
                video_id = content_sha256(resolved)
            except VideoReferenceError as error:
                unresolved.append(str(error))
        yield video_id, row[spec.query_column] if queries else None
    if unresolved:
        logging.getLogger(__name__).warning(
            "%d video(s) of %s could not be identified (their rows cannot exclude a video), e.g. %s",
            len(unresolved), spec.dataset, unresolved[0],
        )  # fmt: skip
