"""The one streamed scheduler: units of work that ask models for answers, kept in flight up to the backends'
capacity, their outputs handed over in small groups as they finish. The build's stages and the evaluation's
answers both run on it.

A unit of work (`Work`) is a generator: it yields the requests it needs next as ``[(backend, request), ...]``,
receives their results in that order, may yield again (classify's rule votes follow its label votes), and returns
its outputs. New units start as soon as requests finish, while fewer requests than the backends' combined
capacity are in flight, so the units (read lazily) may prepare their inputs ahead with memory bounded by that
window. Outputs are delivered once ``deliver_every`` of them are ready or ``deliver_interval_s`` has passed: a
job commits them there, and a SIGKILL loses at most the undelivered ones, whose requests a rerun sends again.

`Checkpoints` is the kill hook both jobs share, so resume can be proven by killing a process for real.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from safevid.backends.base import Backend, RequestStream
from safevid.backends.types import ChatRequest, ChatResult

__all__ = ["Checkpoints", "InjectedFailure", "Work", "chunks", "stream_units"]

T = TypeVar("T")

Work = Generator[list[tuple[Backend, ChatRequest]], list[ChatResult], list[T]]
"""One unit of streamed work: yields ``[(backend, request), ...]``, receives their results in that order, yields
again or returns its outputs."""


class InjectedFailure(RuntimeError):
    """Raised by a ``<prefix>_RAISE_AT`` hook of `Checkpoints`."""


class Checkpoints:
    """Named points around every commit, made observable by environment variables under ``prefix``:

    - ``<prefix>_CHECKPOINT_LOG=<file>``: append each checkpoint's name, one per line.
    - ``<prefix>_KILL_AT=<n>``: SIGKILL this process at its n-th checkpoint (no cleanup runs, as in a node failure
      or an OOM kill).
    - ``<prefix>_KILL_AT_RESULT=<n>``: SIGKILL it when the n-th result of a streamed request lands, before it is
      delivered (mid-stream: other requests in flight, finished outputs not yet committed).
    - ``<prefix>_RAISE_AT=<part>:<n>``: raise `InjectedFailure` at the n-th checkpoint of the part of the job named
      ``part`` (a build's shard): one task fails while its siblings go on.
    """

    def __init__(self, prefix: str, part: str = "0") -> None:
        self.count = 0
        self.results = 0
        self.part = part
        self.kill_at = _int_env(f"{prefix}_KILL_AT")
        self.kill_at_result = _int_env(f"{prefix}_KILL_AT_RESULT")
        log = os.environ.get(f"{prefix}_CHECKPOINT_LOG")
        self.log = Path(log) if log else None
        raise_at = os.environ.get(f"{prefix}_RAISE_AT")
        self.raise_at = tuple(raise_at.rsplit(":", 1)) if raise_at else None

    def __call__(self, name: str) -> None:
        self.count += 1
        killing = self.kill_at is not None and self.count >= self.kill_at
        self._write(f"{name}{' KILL' if killing else ''}")
        if killing:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.raise_at == (self.part, str(self.count)):
            raise InjectedFailure(f"injected failure at checkpoint {self.count} ({name}) of part {self.part}")

    def result(self, where: str) -> None:
        """A streamed request's result landed (not a checkpoint: only the mid-stream kill hook counts it)."""
        self.results += 1
        if self.kill_at_result is not None and self.results >= self.kill_at_result:
            self._write(f"{where}:result KILL")
            os.kill(os.getpid(), signal.SIGKILL)

    def _write(self, line: str) -> None:
        if self.log is not None:
            with self.log.open("a", encoding="utf-8") as f:
                f.write(line + "\n")


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


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


@dataclass
class _Unit(Generic[T]):
    work: Work[T]
    results: list[ChatResult | None] = field(default_factory=list)
    waiting: int = 0


def stream_units(
    units: Iterable[Work[T]],
    deliver: Callable[[list[T]], None],
    *,
    deliver_every: int = 64,
    deliver_interval_s: float = 2.0,
    on_result: Callable[[], None] | None = None,
    progress: str | None = None,
) -> None:
    """Run ``units`` with their requests streamed to the backends, delivering outputs as units finish.

    Args:
        units: The work, read lazily: a unit is started only when the window has room.
        deliver: Called with each group of finished outputs (and a last time with the rest); it commits them.
        deliver_every: Deliver once this many outputs are ready...
        deliver_interval_s: ...or this long after the last delivery.
        on_result: Called as each request's result lands (a kill hook).
        progress: Show a progress bar of the requests with this description.
    """
    streams: dict[int, RequestStream] = {}
    inflight: dict[concurrent.futures.Future[ChatResult], tuple[_Unit[T], int]] = {}
    ready: list[T] = []
    last_delivery = time.monotonic()
    source = iter(units)
    exhausted = False
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=progress, unit="req", dynamic_ncols=True)  # no total: the units are read lazily

    def window() -> int:
        return max((s.capacity for s in streams.values()), default=1) * max(1, len(streams))

    def advance(unit: _Unit[T], results: list[ChatResult] | None) -> None:
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
                list(inflight), timeout=deliver_interval_s, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                unit, position = inflight.pop(future)
                unit.results[position] = future.result()
                if on_result is not None:
                    on_result()
                if bar is not None:
                    bar.update(1)
                unit.waiting -= 1
                if unit.waiting == 0:
                    advance(unit, [r for r in unit.results if r is not None])
            if len(ready) >= deliver_every or time.monotonic() - last_delivery >= deliver_interval_s:
                if ready:
                    deliver(ready)
                ready, last_delivery = [], time.monotonic()
        if ready:
            deliver(ready)
    finally:
        for stream in streams.values():
            stream.close()
        if bar is not None:
            bar.close()
