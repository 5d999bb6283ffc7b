"""Helpers shared by the generation stages: pending work, sampling parameters, failures, commits."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from safevid.backends import SamplingParams
from safevid.pipeline.config import StageSampling
from safevid.pipeline.context import BuildContext
from safevid.pipeline.store import DROPPED, ERROR, Record, RecordStore

T = TypeVar("T")
RETRYABLE_KINDS = ("timeout", "connection", "protocol")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter), read lazily."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def pending(
    store: RecordStore, units: Iterable[T], output_stage: str, key: Callable[[T], str]
) -> Iterator[T]:
    """The units whose output record is not final yet (absent, or a retryable error), checked in chunks."""
    for chunk in chunks(units, 256):
        done = store.done_keys(output_stage, [key(u) for u in chunk])
        yield from (u for u in chunk if key(u) not in done)


def sampling_params(
    ctx: BuildContext, sampling: StageSampling, stage: str, key: str, **extra: Any
) -> SamplingParams:
    """Sampling of one request; a sampled request gets the seed of its key (deterministic on resume)."""
    temperature = extra.pop("temperature", sampling.temperature)
    seed = ctx.seed_for(stage, key) if temperature > 0 else None
    return SamplingParams(
        max_tokens=extra.pop("max_tokens", sampling.max_tokens),
        temperature=temperature,
        top_p=sampling.top_p,
        seed=seed,
        **extra,
    )


def failure(
    stage: str, key: str, video_id: str, result: Any, what: str, data: dict[str, Any] | None = None
) -> Record:
    """The record of a failed request: a retryable error (timeout, connection, HTTP 408/429/5xx, broken
    response), which the next run tries again, or dropped when retrying would fail the same way (an
    output that does not parse, a request the server rejects)."""
    error = result.error
    retryable = error.kind in RETRYABLE_KINDS or (
        error.kind == "status" and (error.status_code in (408, 429) or (error.status_code or 0) >= 500)
    )
    status = ERROR if retryable else DROPPED
    reason = f"{what}_unparsable" if error.kind == "parse" else f"{what}_{error.reason}"
    return Record(stage, key, video_id, status, reason, {**(data or {}), "error": str(error)})


def commit(ctx: BuildContext, store: RecordStore, stage: str, records: list[Record]) -> None:
    """Write a batch in one transaction, between the stage's two checkpoints."""
    if not records:
        return
    ctx.checkpoint(f"{stage}:before_commit")
    store.put_many(records)
    ctx.checkpoint(f"{stage}:after_commit")
