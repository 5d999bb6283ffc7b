"""Orchestration: run a build's stages over one shard, then publish (merging every shard).

One worker (``--shard i --num-shards N``) runs ingest → describe → classify → queries → responses →
gates over the sources whose key hashes to its shard, against its own record store
``<work_dir>/shard-<i>-of-<N>.sqlite``; nothing it does depends on another shard. The publish step
(``--stage publish``) merges the N stores once every worker is complete. With one shard (the
default) a single ``run_build`` does both.

A run holds an exclusive lock on its shard's store and, to publish, on the output folder
(`safevid.pipeline.lock`): a second run on the same shard or output fails at once, naming the holder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safevid.pipeline.config import BuildConfig, fingerprint, fingerprint_payload
from safevid.pipeline.context import BuildContext
from safevid.pipeline.lock import BuildLock
from safevid.pipeline.manifest import ConfigChangedError, build_manifest, check_fingerprint
from safevid.pipeline.publish import MANIFEST_NAME, PUBLISH_LOCK_NAME, PublishResult, publish
from safevid.pipeline.stages import PUBLISH, STAGE_NAMES, WORKER_STAGES, Stage, worker_stage_names
from safevid.pipeline.store import ERROR, RecordStore, find_damaged

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """What a `run_build` call did.

    Attributes:
        output_dir: The dataset folder.
        store_path: This shard's record store.
        manifest: The manifest (the published one after a publish, this shard's otherwise).
        publish: The publish result, if this call published.
        complete: Whether this shard has no retryable failures left; when it has some, nothing was published
            and a rerun retries them.
    """

    output_dir: Path
    store_path: Path
    manifest: dict[str, Any]
    publish: PublishResult | None
    complete: bool


def store_path(config: BuildConfig, shard: int, num_shards: int) -> Path:
    """The record store of one shard, in the build's work folder."""
    return config.work_path / f"shard-{shard:05d}-of-{num_shards:05d}.sqlite"


class IncompleteBuildError(RuntimeError):
    """Publish was asked while some shard store is missing or has failed records."""


class ShardCountError(ValueError):
    """The work folder holds the record stores of a build split into another number of shards."""


def check_shard_count(config: BuildConfig, num_shards: int) -> None:
    """Refuse a run whose shard count differs from the stores already in the work folder.

    Another count assigns the sources to other shards: its stores would be a second, independent build of every
    source, not a resume of the first.
    """
    counts = {
        int(m.group(1))
        for p in config.work_path.glob("shard-*-of-*.sqlite")
        if (m := re.fullmatch(r"shard-\d+-of-(\d+)\.sqlite", p.name))
    }
    other = sorted(counts - {num_shards})
    if other:
        raise ShardCountError(
            f"{config.work_path} holds the record stores of a build in {other[0]} shards "
            f"(shard-*-of-{other[0]:05d}.sqlite), not {num_shards}: another count would build every source again "
            f"in new stores. Rerun with --tasks {other[0]} (or --num-shards {other[0]}), or build into a fresh "
            "--work-dir."
        )


def run_build(
    config: BuildConfig,
    *,
    shard: int = 0,
    num_shards: int = 1,
    stages: tuple[str, ...] | None = None,
    new_output: bool = False,
    progress: bool = False,
    backends: dict[str, Any] | None = None,
) -> BuildResult:
    """Run ``stages`` (default: every worker stage, then publish when there is one shard) of a build.

    Args:
        config: The build configuration.
        shard: This worker's shard, in ``0..num_shards-1``.
        num_shards: Number of shards the sources are partitioned into (by the hash of their key).
        stages: Stages to run, in pipeline order whatever the order given.
        new_output: If the output folder holds a build of another configuration, write to
            ``<output_dir>-<fingerprint[:8]>`` instead of refusing.
        progress: Show progress bars of the generation batches.
        backends: `safevid.backends.Backend` objects serving some ``models`` entries (by name) instead of
            backends built from their config, e.g. a custom engine.

    Raises:
        ConfigChangedError: the store or the output folder was built with another configuration.
        IncompleteBuildError: publish was asked while some shard store is missing or incomplete.
        BuildLockedError: another run is building this shard or publishing to this output folder.
        DamagedStoreError: a record store is damaged (truncated, overwritten).
        ShardCountError: the work folder holds the stores of another shard count.
    """
    ctx = BuildContext(config, shard, num_shards, progress)
    for name, backend in (backends or {}).items():
        ctx.use_backend(name, backend)
    payload = fingerprint_payload(config, ctx.taxonomy.sha, ctx.prompt_shas())
    fp = fingerprint(payload)
    if new_output and _output_conflicts(config, fp, shard, num_shards):
        config.output_dir = f"{config.output_dir}-{fp[:8]}"
        if config.work_dir:
            config.work_dir = f"{config.work_dir}-{fp[:8]}"
        logger.warning("configuration changed: building into %s", config.output_dir)
    _check_output(config, fp)
    if stages is None:
        stages = worker_stage_names() + ((PUBLISH,) if num_shards == 1 else ())
    unknown = sorted(set(stages) - set(STAGE_NAMES))
    if unknown:
        raise ValueError(f"Unknown stage(s) {unknown}; stages: {list(STAGE_NAMES)}")
    worker_stages = [s for s in WORKER_STAGES if s.name in stages]
    check_shard_count(config, num_shards)
    path = store_path(config, shard, num_shards)
    complete = True
    manifest: dict[str, Any] = {}
    locks = contextlib.ExitStack()
    try:
        if worker_stages:
            locks.enter_context(BuildLock(path.with_suffix(".lock"), f"The store of shard {shard} ({path})"))
        if PUBLISH in stages:
            output = Path(config.output_dir)
            locks.enter_context(BuildLock(output / PUBLISH_LOCK_NAME, f"The output folder {output}"))
        if worker_stages:
            with RecordStore(path) as store:
                check_fingerprint(store, fp, payload)
                _run_worker(ctx, store, worker_stages)
                complete = (
                    store.conn.execute("SELECT COUNT(*) FROM records WHERE status = ?", (ERROR,)).fetchone()[
                        0
                    ]
                    == 0
                )
                store.set_meta("complete", "1" if complete and "gates" in stages else "0")
                manifest = build_manifest(ctx, fp, [store], num_shards)
            shard_manifest = path.with_suffix(".manifest.json")
            shard_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        result = None
        if not complete:
            errors = _error_reasons(manifest)
            logger.error(
                "shard %d/%d: %d record(s) failed past their retries and stay pending (%s); nothing is published: "
                "rerun the same command once the cause is fixed (answers received are served from the cache)",
                shard,
                num_shards,
                sum(errors.values()),
                ", ".join(f"{k}={v}" for k, v in errors.items()),
            )
        elif PUBLISH in stages:
            paths = _complete_stores(config, num_shards)
            stores = [RecordStore(p, readonly=True) for p in paths]
            try:
                manifest = build_manifest(ctx, fp, stores, num_shards)
            finally:
                for s in stores:
                    s.close()
            result = publish(ctx, paths, fingerprint=fp, manifest=manifest)
            manifest = json.loads((Path(config.output_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except sqlite3.DatabaseError as e:
        candidates = [path] + [store_path(config, i, num_shards) for i in range(num_shards) if i != shard]
        damaged = find_damaged(candidates, e)
        if damaged is None:
            raise
        raise damaged from e
    finally:
        locks.close()
        ctx.close()
    return BuildResult(Path(config.output_dir), path, manifest, result, complete)


def _error_reasons(manifest: dict[str, Any]) -> dict[str, int]:
    """``stage:reason`` → count of the retryable errors a manifest's stages hold."""
    return {
        f"{stage}:{reason}": n
        for stage, counts in manifest.get("stages", {}).items()
        for reason, n in counts["errors"].items()
    }


def _run_worker(ctx: BuildContext, store: RecordStore, stages: list[Stage]) -> None:
    for stage in stages:
        start = time.perf_counter()
        stage.run(ctx, store)
        logger.info(
            "stage %s done in %.1fs (shard %d/%d)",
            stage.name,
            time.perf_counter() - start,
            ctx.shard,
            ctx.num_shards,
        )


def failed_records(path: Path, *, examples: int = 3) -> str:
    """What failed past its retries in a shard's store: counts per (stage, reason), a few records with their error."""
    with RecordStore(path, readonly=True) as store:
        rows = store.conn.execute(
            "SELECT stage, key, reason, data FROM records WHERE status = ? ORDER BY stage, key", (ERROR,)
        ).fetchall()
    counts = Counter((stage, reason) for stage, _, reason, _ in rows)
    summary = ", ".join(f"{stage} {reason} x{n}" for (stage, reason), n in sorted(counts.items()))
    shown = [
        f"{stage} {key[:12]}: {json.loads(data).get('error', reason)}" for stage, key, reason, data in rows
    ]
    return (
        f"{len(rows)} record(s) failed past their retries ({summary}) in {path}; "
        f"e.g. {'; '.join(shown[:examples])}"
    )


def _complete_stores(config: BuildConfig, num_shards: int) -> list[Path]:
    paths = [store_path(config, i, num_shards) for i in range(num_shards)]
    problems = []
    for i, p in enumerate(paths):
        if not p.exists():
            problems.append(
                f"shard {i}: no store {p} (run the worker with --shard {i} --num-shards {num_shards})"
            )
            continue
        with RecordStore(p, readonly=True) as store:
            complete = store.get_meta("complete") == "1"
            failed = store.conn.execute("SELECT 1 FROM records WHERE status = ? LIMIT 1", (ERROR,)).fetchone()
        if not complete:
            reason = failed_records(p, examples=1) if failed else f"{p} is incomplete"
            problems.append(f"shard {i}: {reason} (rerun its worker: failed requests are retried)")
    if problems:
        raise IncompleteBuildError("Cannot publish:\n  " + "\n  ".join(problems))
    return paths


def _published_fingerprint(config: BuildConfig) -> str | None:
    manifest = Path(config.output_dir) / MANIFEST_NAME
    if not manifest.exists():
        return None
    return json.loads(manifest.read_text(encoding="utf-8")).get("fingerprint")


def _output_conflicts(config: BuildConfig, fp: str, shard: int, num_shards: int) -> bool:
    published = _published_fingerprint(config)
    if published is not None and published != fp:
        return True
    path = store_path(config, shard, num_shards)
    if path.exists():
        with RecordStore(path) as store:
            existing = store.get_meta("fingerprint")
        return existing is not None and existing != fp
    return False


def _check_output(config: BuildConfig, fp: str) -> None:
    published = _published_fingerprint(config)
    if published is not None and published != fp:
        raise ConfigChangedError(
            f"{config.output_dir} holds a dataset built with another configuration (fingerprint "
            f"{published[:12]} != {fp[:12]}); build into a fresh folder with --output-dir DIR or --new-output."
        )
