"""`DecodePool`: video decoding in worker processes, ahead of whoever consumes the frames.

Sampling 16 frames of a 720p clip costs seconds of CPU. A build that decodes in its main process
leaves its model servers idle meanwhile and uses one core however many the node has; the pool runs
``workers`` decode processes (`safevid.video.worker.DecodeWorker`, the killable worker, one per pool
thread) and `DecodePool.imap_unordered` keeps at most ``ahead`` calls queued or finished but not yet
consumed, so memory is bounded by that queue, never by the number of videos.

A call is any ``"module:function"`` importable in the worker; its arguments and result travel
pickled over the worker's socket, so a caller sends paths and settings and gets back what it needs
next (e.g. the frames already encoded for a request), not raw frames it would encode itself.

No call hangs and no video is lost to a lost worker: every call has a time limit (``timeout_s``, by default
`DEFAULT_DECODE_TIMEOUT_S`), after which its worker is killed; a worker that ends mid-call (killed, stopped and
then killed at the limit, crashed) is replaced and the call tried again, up to ``retries`` more times, before the
call raises its `VideoDecodeError` (the video is then recorded as failed, naming the cause). A worker that cannot
start is tried the same way, then raises `safevid.video.worker.WorkerStartError` naming the exit code: that is
not a video's fault, and stops the caller.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from safevid.video.worker import DecodeWorker, WorkerLostError, WorkerStartError

T = TypeVar("T")
logger = logging.getLogger(__name__)

DEFAULT_DECODE_TIMEOUT_S = 300.0
"""Time limit of one pool call when none is given: sampling a long 4K video takes seconds, a hung one forever."""
DEFAULT_DECODE_RETRIES = 2
"""Tries after the first of a call whose worker ended mid-call (or did not start)."""


def default_decode_workers() -> int:
    """Decode processes by default: the CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class DecodePool:
    """Worker processes running decode calls, fed from a bounded queue (see the module docstring).

    Args:
        workers (`int`, *optional*): decode processes; `default_decode_workers()` when `None`.
        timeout_s (`float`, *optional*): kill a call's worker after this long (the call is then tried again, and
            raises `VideoDecodeError` past ``retries``); `None`: `DEFAULT_DECODE_TIMEOUT_S`.
        retries (`int`, defaults to `DEFAULT_DECODE_RETRIES`): more tries of a call whose worker ended mid-call
            (timed out, stopped, crashed) or did not start, each in a fresh worker.

    Example:

    ```python
    with DecodePool(4) as pool:
        for path, outcome in pool.imap_unordered("safevid.video.api:probe_resolved", paths, args_of):
            ...
    ```
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout_s: float | None = None,
        retries: int = DEFAULT_DECODE_RETRIES,
    ) -> None:
        self.workers = workers or default_decode_workers()
        if self.workers < 1:
            raise ValueError(f"DecodePool needs at least one worker, got {workers}")
        if retries < 0:
            raise ValueError(f"DecodePool retries must be >= 0, got {retries}")
        self.timeout_s = DEFAULT_DECODE_TIMEOUT_S if timeout_s is None else timeout_s
        self.retries = retries
        self._threads = concurrent.futures.ThreadPoolExecutor(
            self.workers, thread_name_prefix="safevid-decode"
        )
        self._local = threading.local()
        self._started: list[DecodeWorker] = []
        self._lock = threading.Lock()
        # A pool dropped without close() (an exception, a forgotten context) must not leave workers behind.
        # (Not waiting for the threads then: the last reference may be dropped by one of them.)
        self._finalizer = weakref.finalize(self, _stop, self._threads, self._started, self._lock, wait=False)

    def call(self, function: str, args: tuple[Any, ...], name: str) -> Any:
        """Run ``function(*args)`` in this thread's worker process (started on first use, replaced when it ends),
        tried again in a fresh worker when the worker ends mid-call or does not start (see the module docstring).

        Raises:
            VideoDecodeError: the call raised it, or its worker ended mid-call on every try (`WorkerLostError`).
            WorkerStartError: no worker could be started.
        """
        tries = 0
        while True:
            tries += 1
            try:
                return self._worker().call(function, args, self.timeout_s, name)
            except (WorkerLostError, WorkerStartError) as error:
                if tries > self.retries:
                    if isinstance(error, WorkerLostError):
                        raise WorkerLostError(
                            error.source, f"{error.cause}, on each of {tries} tries"
                        ) from None
                    raise
                logger.warning("%s; trying again in a fresh decoder process (try %d of %d)", error, tries + 1,
                               self.retries + 1)  # fmt: skip

    def _worker(self) -> DecodeWorker:
        """This thread's worker process, started on first use and after the last one ended."""
        worker: DecodeWorker | None = getattr(self._local, "worker", None)
        if worker is None or not worker.alive():
            # The workers decode side by side: each takes its share of the cores, not all of them.
            worker = self._local.worker = DecodeWorker(
                threads=max(1, default_decode_workers() // self.workers)
            )
            with self._lock:
                self._started.append(worker)
        return worker

    def imap_unordered(
        self,
        function: str,
        items: Iterable[T],
        args_of: Callable[[T], tuple[Any, ...]],
        *,
        ahead: int | None = None,
        name_of: Callable[[T], str] = str,
    ) -> Iterator[tuple[T, Any]]:
        """``(item, result)`` per item, in completion order; a call that raised gives its exception as result.

        At most ``ahead`` calls (default: twice the workers) are queued, running or done but not yet
        consumed; ``items`` is read lazily, only as the consumer makes room.
        """
        limit = ahead or 2 * self.workers
        source = iter(items)
        running: dict[concurrent.futures.Future[Any], T] = {}
        exhausted = False
        while True:
            while not exhausted and len(running) < limit:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                running[self._threads.submit(self.call, function, args_of(item), name_of(item))] = item
            if not running:
                return
            done, _ = concurrent.futures.wait(list(running), return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                item = running.pop(future)
                error = future.exception()
                yield item, error if error is not None else future.result()

    def close(self) -> None:
        """Stop the threads and the worker processes."""
        if self._finalizer.detach() is not None:
            _stop(self._threads, self._started, self._lock, wait=True)

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(
    threads: concurrent.futures.ThreadPoolExecutor,
    started: list[DecodeWorker],
    lock: threading.Lock,
    *,
    wait: bool,
) -> None:
    threads.shutdown(wait=wait, cancel_futures=True)
    with lock:
        for worker in started:
            if worker.alive():
                worker.kill()
        started.clear()
