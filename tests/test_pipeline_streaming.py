"""The streamed stage loop (`safevid.pipeline.batching.run_streamed`) and the decode pool it is fed by."""

from __future__ import annotations

import concurrent.futures
import random
import threading
import time

import pytest

from safevid.backends import BackendConfig, ChatRequest, ChatResult, Choice, RequestStream
from safevid.backends.base import Backend


class _RecordingStream(RequestStream):
    """Answers each request after a random short delay on its own thread; records the most in flight."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.inflight = self.peak = self.sent = 0
        self.lock = threading.Lock()
        self.rng = random.Random(0)

    def submit(self, request: ChatRequest) -> concurrent.futures.Future[ChatResult]:
        future: concurrent.futures.Future[ChatResult] = concurrent.futures.Future()
        with self.lock:
            self.inflight += 1
            self.sent += 1
            self.peak = max(self.peak, self.inflight)
            delay = self.rng.random() / 200

        def answer() -> None:
            time.sleep(delay)
            with self.lock:
                self.inflight -= 1
            future.set_result(
                ChatResult(request.id, choices=[Choice(request.messages[0]["content"].upper())])
            )

        threading.Thread(target=answer).start()
        return future

    def close(self) -> None:
        pass


class _StreamingBackend(Backend):
    kind = "recording"

    def __init__(self, capacity: int) -> None:
        super().__init__(BackendConfig(model="recording", cache=False))
        self.stream = _RecordingStream(capacity)

    def open_stream(self) -> RequestStream:
        return self.stream

    def _generate(self, requests, hooks) -> None:  # pragma: no cover - streamed only
        raise AssertionError("the streamed loop must not batch")


def _context(tmp_path, monkeypatch):
    from safevid.pipeline import BuildConfig
    from safevid.pipeline.context import BuildContext

    log = tmp_path / "checkpoints.log"
    monkeypatch.setenv("SAFEVID_BUILD_CHECKPOINT_LOG", str(log))
    config = BuildConfig.from_dict(
        {
            "models": {m: {"model": "x"} for m in ("describer", "classifier", "llm", "target", "judge")},
            "inputs": [{"test_videos": 1}],
            "output_dir": str(tmp_path / "out"),
            "responses": {"chosen_model": "llm", "rejected_model": "target", "refusal_model": "llm"},
            "queries": {"model": "llm"},
            "gates": {"judge_model": "judge"},
        }
    )
    return BuildContext(config), log


def test_units_stream_up_to_capacity_ask_again_and_are_committed_once(tmp_path, monkeypatch):
    from safevid.pipeline.batching import run_streamed
    from safevid.pipeline.store import OK, Record, RecordStore

    ctx, log = _context(tmp_path, monkeypatch)
    backend = _StreamingBackend(capacity=8)

    def unit(i: int):
        [first] = yield [(backend, ChatRequest([{"role": "user", "content": f"a{i}"}]))]
        # A second step that depends on the first answer (as classify's rule votes do), two requests at once.
        second = yield [
            (backend, ChatRequest([{"role": "user", "content": f"{first.text}-{k}"}])) for k in (1, 2)
        ]
        return [Record("bench", f"{i:04d}", "v", OK, None, {"texts": [r.text for r in second]})]

    with RecordStore(tmp_path / "store.sqlite") as store:
        run_streamed(ctx, store, "bench", (unit(i) for i in range(100)), commit_every=16)
        records = list(store.iter_stage("bench"))
    assert [r.key for r in records] == [f"{i:04d}" for i in range(100)]
    assert records[7].data == {"texts": ["A7-1", "A7-2"]}
    assert backend.stream.sent == 300
    assert backend.stream.peak >= 8  # the window is filled (a unit's next step starts at once, on top)
    commits = log.read_text().split().count("bench:after_commit")
    assert commits >= 100 // 16


def test_a_backend_without_its_own_stream_is_fed_in_micro_batches(tmp_path, monkeypatch):
    from safevid.pipeline.batching import run_streamed
    from safevid.pipeline.store import OK, Record, RecordStore

    class Echo(Backend):
        kind = "echo"

        def __init__(self) -> None:
            super().__init__(BackendConfig(model="echo", cache=False, batch_size=4, max_concurrency=4))
            self.batches: list[int] = []

        def _generate(self, requests, hooks) -> None:
            self.batches.append(len(requests))
            for i, request in enumerate(requests):
                hooks.finish(i, ChatResult(request.id, choices=[Choice(request.messages[0]["content"])]))

    ctx, _ = _context(tmp_path, monkeypatch)
    backend = Echo()

    def unit(i: int):
        [result] = yield [(backend, ChatRequest([{"role": "user", "content": str(i)}]))]
        return [Record("echo", f"{i:03d}", "v", OK, None, {"text": result.text})]

    with RecordStore(tmp_path / "store.sqlite") as store:
        run_streamed(ctx, store, "echo", (unit(i) for i in range(30)))
        assert [r.data["text"] for r in store.iter_stage("echo")] == [str(i) for i in range(30)]
    assert sum(backend.batches) == 30
    assert max(backend.batches) <= 4


def test_decode_pool_returns_each_result_or_its_error(tmp_path):
    from safevid.testing.videos import make_test_video
    from safevid.video import VideoDecodeError, VideoSampling
    from safevid.video.pool import DecodePool

    paths = [make_test_video(tmp_path / f"v{i}.mp4", duration=1.0 + i) for i in range(3)]
    paths.append(tmp_path / "missing.mp4")
    sampling = VideoSampling(num_frames=4)

    with DecodePool(2) as pool:
        results = dict(pool.imap_unordered("probe_video", paths, lambda p: (p, sampling), ahead=2))
    assert set(results) == set(paths)
    assert [round(results[p].duration) for p in paths[:3]] == [1, 2, 3]
    assert isinstance(results[paths[3]], VideoDecodeError)
    assert "missing.mp4" in str(results[paths[3]])
    with pytest.raises(ValueError, match="at least one worker"):
        DecodePool(-1)


def test_decode_pool_workers_share_the_cores_and_a_lone_decoder_takes_them_all(monkeypatch):
    from safevid.video.decoders import DECODE_THREADS_ENV, ffmpeg_threads
    from safevid.video.pool import DecodePool, default_decode_workers

    monkeypatch.delenv(DECODE_THREADS_ENV, raising=False)
    assert ffmpeg_threads() == 0  # one video decoded alone: FFmpeg uses every core
    monkeypatch.setenv(DECODE_THREADS_ENV, "two")
    with pytest.raises(ValueError, match=DECODE_THREADS_ENV):
        ffmpeg_threads()
    monkeypatch.delenv(DECODE_THREADS_ENV)
    with DecodePool(2) as pool:
        seen = pool.call("safevid.video.decoders:ffmpeg_threads", (), "threads")
    assert seen == max(1, default_decode_workers() // 2)


def test_a_decode_pool_dropped_without_close_stops_its_workers(tmp_path):
    import gc

    from safevid.testing.videos import make_test_video
    from safevid.video import VideoSampling
    from safevid.video.pool import DecodePool

    path = make_test_video(tmp_path / "v.mp4", duration=1.0)
    pool = DecodePool(1)
    [(_, probe)] = pool.imap_unordered("probe_video", [path], lambda p: (p, VideoSampling()))
    assert round(probe.duration) == 1
    [worker] = pool._started
    del pool
    gc.collect()
    assert worker.process.wait(timeout=30) is not None  # killed, not left running
