"""A decode worker process that can be killed, so no video can hang its caller.

Used when ``VideoSampling.timeout_s`` is set. FFmpeg calls cannot be interrupted from Python (a
thread stuck in a C call cannot be cancelled), so the only reliable bound is a separate process:
the caller waits ``timeout_s`` for the answer and kills the worker with SIGKILL if it does not
come. A crash inside FFmpeg (a segfault on a hostile file) likewise ends the worker, not the caller.

Cost: the worker is one long-lived ``python -m safevid.video.worker`` per calling process,
started on first use (a few seconds: it imports torch, torchcodec and PyAV) and reused; the
start-up is not counted against `timeout_s`. Each call then costs one round trip over a socket:
the source path (or bytes) one way, the pickled frames back (one copy, ~a millisecond per MB).
After a timeout the worker is killed and the next call starts a fresh one. Calls from several
threads share the one worker, one at a time. Without a timeout, decoding runs in-process with
none of this overhead.

The worker is started with ``subprocess`` rather than ``multiprocessing`` so that it never
re-imports the caller's ``__main__`` (a script without a ``__name__`` guard would run twice).
"""

from __future__ import annotations

import atexit
import importlib
import os
import pickle
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from safevid.video.decoders import DECODE_THREADS_ENV
from safevid.video.errors import VideoDecodeError

DEFAULT_FUNCTIONS = "safevid.video.api"  # where a call's bare function name is looked up

STARTUP_TIMEOUT_S = 300.0


class WorkerLostError(VideoDecodeError):
    """The decoder process ended mid-call: killed at its time limit, stopped, or crashed (a signal, a segfault on a
    hostile file). Trying the video again in a fresh process may succeed (`safevid.video.pool.DecodePool` does)."""


class WorkerStartError(RuntimeError):
    """The decoder process exited before it was ready (a broken environment, a kill during start-up)."""


class DecodeWorker:
    """One worker process and the socket to it."""

    def __init__(self, threads: int | None = None) -> None:
        """Start the process; ``threads``: FFmpeg threads per decoder in it (`safevid.video.decoders.ffmpeg_threads`;
        `None`: as in the caller)."""
        parent, child = socket.socketpair()
        env = dict(os.environ)
        if threads is not None:
            env[DECODE_THREADS_ENV] = str(threads)
        # The child must import the same safevid as the caller (e.g. from a source checkout).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "safevid.video.worker", str(child.fileno())],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # keep the caller's stdout clean (e.g. `safevid sample` JSON)
            env=env,
        )
        child.close()
        self.connection = Connection(parent.detach())
        if not self.connection.poll(STARTUP_TIMEOUT_S):
            self.kill()
            raise WorkerStartError(f"The video decode worker did not start within {STARTUP_TIMEOUT_S:.0f} s.")
        try:
            _receive(self.connection)  # the "ready" message
        except (EOFError, OSError):
            code = self.kill()
            raise WorkerStartError(
                f"The video decode worker ({sys.executable} -m safevid.video.worker) exited during start-up with "
                f"code {code}. Its error, if it printed one, is above on stderr; check that "
                f"`{sys.executable} -c 'import torch, torchcodec, av'` works in this environment."
            ) from None

    def call(self, function: str, args: tuple[Any, ...], timeout_s: float | None, source_name: str) -> Any:
        """Run ``function(*args)`` in the worker (a name in `safevid.video.api`, or ``"module:name"``); kill it
        and raise `WorkerLostError` if it takes over `timeout_s` (`None`: no limit) or the process ends."""
        try:
            _send(self.connection, (function, args))
            answered = self.connection.poll(timeout_s)
        except OSError:  # the process is already gone: the socket is closed
            answered = True
        if not answered:
            self.kill()
            raise WorkerLostError(source_name, f"timed out after {timeout_s:g} s (decoder process killed)")
        try:
            status, payload = _receive(self.connection)
        except (EOFError, OSError):
            code = self.kill()
            raise WorkerLostError(source_name, f"the decoder process crashed (exit code {code})") from None
        if status == "error":
            raise payload
        return payload

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> int | None:
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait()
        self.connection.close()
        return code


def _send(connection: Connection, message: Any) -> None:
    # Plain pickle, not Connection.send: once torch is imported, multiprocessing's pickler
    # would pass tensors as shared-memory handles that only a multiprocessing child can open.
    connection.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(connection: Connection) -> Any:
    return pickle.loads(connection.recv_bytes())


_lock = threading.Lock()
_worker: DecodeWorker | None = None


def run_with_timeout(function: str, args: tuple[Any, ...], timeout_s: float, source_name: str) -> Any:
    """Call ``safevid.video.api.<function>(*args)`` in the shared worker, bounded by `timeout_s`."""
    global _worker
    with _lock:
        if _worker is None or not _worker.alive():
            _worker = DecodeWorker()
        worker = _worker
        try:
            return worker.call(function, args, timeout_s, source_name)
        finally:
            if not worker.alive():
                _worker = None


@atexit.register
def _shutdown() -> None:
    if _worker is not None and _worker.alive():
        _worker.kill()


def _serve(fd: int) -> None:
    # Import the decoders before announcing readiness, so their import time (seconds) is part
    # of the start-up and never of a call's timeout.
    import av  # noqa: F401
    import torchcodec.decoders  # noqa: F401
    import torchvision.transforms.v2.functional  # noqa: F401

    # Calls name their function, so the worker runs `safevid.video.api` without the two modules importing each
    # other (api starts workers; a worker runs api).
    api = importlib.import_module(DEFAULT_FUNCTIONS)
    connection = Connection(fd)
    _send(connection, ("ready", None))
    while True:
        try:
            function, args = _receive(connection)
        except EOFError:  # the caller exited or closed the socket
            return
        module, _, name = function.rpartition(":")
        try:
            target = getattr(importlib.import_module(module), name) if module else getattr(api, name)
            result = ("ok", target(*args))
        except Exception as error:
            result = (
                "error",
                error if _picklable(error) else RuntimeError(f"{type(error).__name__}: {error}"),
            )
        _send(connection, result)


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
