"""Helpers shared by the generation stages: pending work, sampling parameters, failures, and the streamed
stage loop that runs them.

`run_streamed` keeps every backend busy: each unit of work (a video, a query, a pair) is a generator that
yields the requests it needs next and gets their results back, so a unit may ask again (classify's rule
votes after its label votes). New units start as soon as requests finish, up to the backends' concurrency;
no unit waits for another, and finished records are committed in small groups as they land, between the
stage's two checkpoints. A SIGKILL then loses at most the uncommitted records, whose requests the next run
sends again (answered from the response cache), and never duplicates one: records are keyed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from safevid.backends import SamplingParams
from safevid.backends.scheduler import Work, chunks, stream_units
from safevid.pipeline.config import StageSampling
from safevid.pipeline.context import BuildContext
from safevid.pipeline.store import DROPPED, ERROR, Record, RecordStore

T = TypeVar("T")


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
    status = ERROR if error.retryable else DROPPED
    reason = f"{what}_unparsable" if error.kind == "parse" else f"{what}_{error.reason}"
    return Record(stage, key, video_id, status, reason, {**(data or {}), "error": str(error)})


def commit(ctx: BuildContext, store: RecordStore, stage: str, records: list[Record]) -> None:
    """Write a batch in one transaction, between the stage's two checkpoints."""
    if not records:
        return
    ctx.checkpoint(f"{stage}:before_commit")
    store.put_many(records)
    ctx.checkpoint(f"{stage}:after_commit")


def run_streamed(
    ctx: BuildContext,
    store: RecordStore,
    stage: str,
    units: Iterable[Work[Record]],
    *,
    commit_every: int = 64,
    commit_interval_s: float = 2.0,
) -> None:
    """Run a stage's ``units`` on the streamed scheduler (`safevid.backends.scheduler.stream_units`), committing
    their records as they are done: once ``commit_every`` are ready or ``commit_interval_s`` has passed."""
    stream_units(
        units,
        lambda records: commit(ctx, store, stage, records),
        deliver_every=commit_every,
        deliver_interval_s=commit_interval_s,
        on_result=lambda: ctx.checkpoint.result(stage),
        progress=stage if ctx.progress else None,
    )
