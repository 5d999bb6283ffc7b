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

import concurrent.futures
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from safevid.backends import Backend, ChatRequest, ChatResult, RequestStream, SamplingParams
from safevid.pipeline.config import StageSampling
from safevid.pipeline.context import BuildContext
from safevid.pipeline.store import DROPPED, ERROR, Record, RecordStore

T = TypeVar("T")


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


Work = Generator[list[tuple[Backend, ChatRequest]], list[ChatResult], list[Record]]
"""One unit of a streamed stage: yields ``[(backend, request), ...]``, receives their results in that
order, yields again or returns the unit's records."""


@dataclass
class _Unit:
    work: Work
    results: list[ChatResult | None] = field(default_factory=list)
    waiting: int = 0


def run_streamed(
    ctx: BuildContext,
    store: RecordStore,
    stage: str,
    units: Iterable[Work],
    *,
    commit_every: int = 64,
    commit_interval_s: float = 2.0,
) -> None:
    """Run ``units`` with their requests streamed to the backends, committing records as they are done.

    New units are started while fewer requests than the backends' combined capacity are in flight, so
    ``units`` (read lazily) may prepare inputs ahead (a decode pool) with memory bounded by that window.
    Records are committed once ``commit_every`` of them are ready or ``commit_interval_s`` has passed.
    """
    streams: dict[int, RequestStream] = {}
    inflight: dict[concurrent.futures.Future[ChatResult], tuple[_Unit, int]] = {}
    ready: list[Record] = []
    last_commit = time.monotonic()
    source = iter(units)
    exhausted = False
    bar: Any = None
    if ctx.progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=stage, unit="req", dynamic_ncols=True)  # no total: the units are read lazily

    def window() -> int:
        return max((s.capacity for s in streams.values()), default=1) * max(1, len(streams))

    def advance(unit: _Unit, results: list[ChatResult] | None) -> None:
        while True:
            try:
                requests = next(unit.work) if results is None else unit.work.send(results)
            except StopIteration as stop:
                ready.extend(stop.value)
                return
            if requests:
                break
            results = []
        unit.results, unit.waiting = [None] * len(requests), len(requests)
        for position, (backend, request) in enumerate(requests):
            stream = streams.get(id(backend))
            if stream is None:
                stream = streams[id(backend)] = backend.open_stream()
            inflight[stream.submit(request)] = (unit, position)

    try:
        while True:
            while not exhausted and len(inflight) < window():
                work = next(source, None)
                if work is None:
                    exhausted = True
                else:
                    advance(_Unit(work), None)
            if not inflight:
                break
            done, _ = concurrent.futures.wait(
                list(inflight), timeout=commit_interval_s, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                unit, position = inflight.pop(future)
                unit.results[position] = future.result()
                ctx.checkpoint.result(stage)
                if bar is not None:
                    bar.update(1)
                unit.waiting -= 1
                if unit.waiting == 0:
                    advance(unit, [r for r in unit.results if r is not None])
            if len(ready) >= commit_every or time.monotonic() - last_commit >= commit_interval_s:
                commit(ctx, store, stage, ready)
                ready, last_commit = [], time.monotonic()
        commit(ctx, store, stage, ready)
    finally:
        for stream in streams.values():
            stream.close()
        if bar is not None:
            bar.close()
