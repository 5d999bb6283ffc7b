"""The record store: every stage's outputs on disk, keyed by content hash, in one SQLite file per shard.

Why SQLite (WAL mode): a batch of records is committed in one transaction, so a process killed at any
instant leaves either the whole batch or none of it (the write-ahead log is rolled back or replayed on
the next open); lookups by key are indexed, so a resumed stage skips finished work without loading
anything into memory; and iteration pages through keys (keyset pagination), so memory stays flat
however many videos the shard holds.

One table holds every stage's records::

    records(stage, key, video_id, status, reason, data)   PRIMARY KEY (stage, key)

- ``status`` is ``ok`` (input of the next stage), ``dropped`` (final, counted with its ``reason``) or
  ``error`` (a transient failure such as a backend timeout, retried by the next run).
- ``data`` is the record as JSON.

The ``meta`` table holds the build's config fingerprint, so a store is never resumed under another
configuration. A store SQLite cannot read (truncated, overwritten) raises `DamagedStoreError`, which
names the file and how to rebuild it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OK, DROPPED, ERROR = "ok", "dropped", "error"
_SCHEMA_VERSION = "1"
_DAMAGED_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (`sqlite_errorcode` exists from Python 3.11)


class DamagedStoreError(RuntimeError):
    """A record store SQLite cannot read: truncated, overwritten, or not a database."""

    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(
            f"The record store {path} is damaged ({error}). Delete it, with its {path.name}-wal and "
            f"{path.name}-shm files if present, and rerun its shard's worker to rebuild it (model answers "
            "already received are served from the response cache)."
        )
        self.path = path


def is_damage(error: BaseException) -> bool:
    """Whether ``error`` is SQLite reporting a damaged database file (not a lock or I/O problem)."""
    return getattr(error, "sqlite_errorcode", None) in _DAMAGED_CODES


def find_damaged(paths: Iterable[Path], error: sqlite3.DatabaseError) -> DamagedStoreError | None:
    """The `DamagedStoreError` of the first of ``paths`` that fails SQLite's check, if ``error`` is damage."""
    if not is_damage(error):
        return None
    for path in paths:
        if not path.exists():
            continue
        try:
            conn = sqlite3.connect(path)
            try:
                result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            return DamagedStoreError(path, e)
        if result != "ok":
            return DamagedStoreError(path, result)
    return None


@dataclass(frozen=True)
class Record:
    """One stored record.

    Attributes:
        stage: The stage that wrote it (``video``, ``describe``, ``classify``, ``query``, ``pair``, ``gate``...).
        key: Its content-hash key, unique within the stage.
        video_id: The video it belongs to (the unit of sharding and of iteration order).
        status: ``ok``, ``dropped`` or ``error``.
        reason: Why it was dropped or failed (a short code); ``None`` when ok.
        data: The record itself.
    """

    stage: str
    key: str
    video_id: str
    status: str
    reason: str | None
    data: dict[str, Any]


class RecordStore:
    """A SQLite-backed record store (see the module docstring).

    Args:
        path: The database file (created with its folder).
        readonly: Open an existing store for reading only (the publish step's view of a worker's shard).

    Raises:
        DamagedStoreError: SQLite cannot read the file.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            self._open(readonly)
        except sqlite3.DatabaseError as e:
            if hasattr(self, "conn"):
                self.conn.close()
            if is_damage(e):
                raise DamagedStoreError(self.path, e) from e
            raise

    def _open(self, readonly: bool) -> None:
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"No record store at {self.path}")
            # Not `mode=ro`: a store left by a killed worker has a write-ahead log to replay first.
            self.conn = sqlite3.connect(self.path, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a process kill (the OS has the pages); only a power
        # loss can lose the last transactions, never corrupt the file.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=60000")
        if not readonly:
            self.conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS records (
                    stage TEXT NOT NULL, key TEXT NOT NULL, video_id TEXT NOT NULL,
                    status TEXT NOT NULL, reason TEXT, data TEXT NOT NULL,
                    PRIMARY KEY (stage, key)
                ) WITHOUT ROWID;
                CREATE INDEX IF NOT EXISTS records_by_video ON records (stage, status, video_id, key);
                """
            )
            if self.get_meta("schema_version") is None:
                self.set_meta("schema_version", _SCHEMA_VERSION)

    # --- meta ------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- writes ----------------------------------------------------------------------------------
    def put_many(self, records: Iterable[Record]) -> int:
        """Write records in one transaction (all or none); a record replaces one with the same stage and key."""
        rows = [
            (
                r.stage,
                r.key,
                r.video_id,
                r.status,
                r.reason,
                json.dumps(r.data, ensure_ascii=False, sort_keys=True),
            )
            for r in records
        ]
        if not rows:
            return 0
        with self._transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO records (stage, key, video_id, status, reason, data) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def _transaction(self) -> _Transaction:
        return _Transaction(self.conn)

    # --- reads -----------------------------------------------------------------------------------
    def get(self, stage: str, key: str) -> Record | None:
        row = self.conn.execute(
            "SELECT stage, key, video_id, status, reason, data FROM records WHERE stage = ? AND key = ?",
            (stage, key),
        ).fetchone()
        return None if row is None else _record(row)

    def done_keys(self, stage: str, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` that have a final (ok or dropped) record in ``stage``; errors are not done."""
        keys = list(keys)
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                k
                for (k,) in self.conn.execute(
                    f"SELECT key FROM records WHERE stage = ? AND status != 'error' AND key IN ({marks})",
                    (stage, *chunk),
                )
            )
        return found

    def iter_stage(self, stage: str, status: str | None = OK, *, page: int = 512) -> Iterator[Record]:
        """Records of ``stage`` (with ``status``, or all) in (video_id, key) order, a page at a time.

        Keyset pagination: each page is its own short query, so the caller may write to the store
        between records, and only one page is ever in memory.
        """
        where = "stage = ?" + (" AND status = ?" if status is not None else "")
        params: tuple[Any, ...] = (stage, status) if status is not None else (stage,)
        last: tuple[str, str] = ("", "")
        while True:
            rows = self.conn.execute(
                f"SELECT stage, key, video_id, status, reason, data FROM records WHERE {where} "
                "AND (video_id, key) > (?, ?) ORDER BY video_id, key LIMIT ?",
                (*params, *last, page),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _record(row)
            last = (rows[-1][2], rows[-1][1])

    def iter_by_key(self, stage: str, status: str = OK, *, page: int = 512) -> Iterator[Record]:
        """Records of ``stage`` with ``status`` in key order (the publish order), a page at a time."""
        last = ""
        while True:
            rows = self.conn.execute(
                "SELECT stage, key, video_id, status, reason, data FROM records "
                "WHERE stage = ? AND status = ? AND key > ? ORDER BY key LIMIT ?",
                (stage, status, last, page),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _record(row)
            last = rows[-1][1]

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{stage: {status: {reason or "": count}}}`` over the whole store."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for stage, status, reason, count in self.conn.execute(
            "SELECT stage, status, COALESCE(reason, ''), COUNT(*) FROM records GROUP BY stage, status, reason"
        ):
            out.setdefault(stage, {}).setdefault(status, {})[reason] = count
        return out

    def count(self, stage: str, status: str = OK) -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM records WHERE stage = ? AND status = ?", (stage, status)
        ).fetchone()[0]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception (autocommit connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _record(row: tuple[Any, ...]) -> Record:
    stage, key, video_id, status, reason, data = row
    return Record(stage, key, video_id, status, reason, json.loads(data))
