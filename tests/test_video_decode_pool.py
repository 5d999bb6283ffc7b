"""Decoding never hangs and never loses a video: a stopped or killed decode worker is replaced and its video tried
again, a worker that cannot start is a clear error, and an MPEG-TS whose 33-bit clock wraps decodes."""

from __future__ import annotations

import os
import signal
import sys
from fractions import Fraction

import pytest

from safevid.testing.videos import make_test_video, read_frame_index
from safevid.video import VideoDecodeError, VideoSampling, sample_video
from safevid.video.pool import DEFAULT_DECODE_TIMEOUT_S, DecodePool
from safevid.video.worker import WorkerLostError, WorkerStartError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_test_video(tmp_path_factory.mktemp("pool") / "clip.mp4", duration=1.0)


def _sample(pool: DecodePool, clip) -> list[int]:
    sampled = pool.call("sample_video", (clip, VideoSampling(num_frames=4)), str(clip))
    return [read_frame_index(frame) for frame in sampled.frames]


def test_every_pool_call_has_a_time_limit_by_default():
    with DecodePool(1) as pool:
        assert pool.timeout_s == DEFAULT_DECODE_TIMEOUT_S
    with pytest.raises(ValueError, match="retries must be >= 0"):
        DecodePool(1, retries=-1)


def test_a_stopped_worker_is_killed_at_its_time_limit_and_the_video_tried_again(clip):
    with DecodePool(1, timeout_s=5.0) as pool:
        expected = _sample(pool, clip)
        [stopped] = pool._started
        os.kill(
            stopped.process.pid, signal.SIGSTOP
        )  # as a debugger, a cgroup freeze or a stuck NFS read would
        assert (
            _sample(pool, clip) == expected
        )  # not a hang: the stopped worker was killed, a fresh one decoded it
        assert stopped.process.poll() == -signal.SIGKILL
        assert len(pool._started) == 2


def test_a_killed_worker_is_replaced_and_a_worker_that_always_dies_fails_its_video_after_its_retries(clip):
    with DecodePool(1, retries=2) as pool:
        expected = _sample(pool, clip)
        [killed] = pool._started
        os.kill(killed.process.pid, signal.SIGKILL)  # e.g. the kernel's OOM killer
        killed.process.wait()
        assert _sample(pool, clip) == expected
        # A call that crashes its worker every time (a decoder segfaulting on a hostile file): three tries, then
        # a VideoDecodeError naming the cause, which callers record as the video's failure.
        with pytest.raises(
            WorkerLostError, match=r"the decoder process crashed \(exit code -6\), on each of 3 tries"
        ):
            pool.call("os:abort", (), "hostile.mp4")
        assert isinstance(WorkerLostError("x", "y"), VideoDecodeError)
        assert (
            len(pool._started) == 2 + 2
        )  # the first try ran in the live worker, each other one in a fresh one
        assert _sample(pool, clip) == expected  # and the pool goes on


def test_a_worker_that_cannot_start_is_a_clear_error_not_an_eof_traceback(clip, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")  # exits at once, as a worker killed at start-up
    with DecodePool(1, retries=1) as pool, pytest.raises(WorkerStartError) as caught:
        _sample(pool, clip)
    message = str(caught.value)
    assert "exited during start-up with code 1" in message
    assert "import torch, torchcodec, av" in message


def _mpegts(path, start_s: float, frames: int = 200, fps: int = 10):
    """An MPEG-TS whose first frame is at ``start_s`` on its 90 kHz clock, which wraps at 2**33 ticks
    (95443.7 s), as a broadcast capture taken after a day of uptime does."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = fps
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 7) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(start_s * fps) + i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("start_s", [95400.0, 95433.0], ids=["before-the-wrap", "wrapping-mid-stream"])
@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
@pytest.mark.parametrize("seek_mode", ["exact", "approximate"])
def test_an_mpeg_ts_near_or_across_the_clock_wrap_decodes(tmp_path, start_s, backend, seek_mode):
    # FFmpeg unwraps the clock: the times near the wrap come out negative. Both decoders take them as they are.
    path = _mpegts(tmp_path / "capture.ts", start_s)
    sampled = sample_video(path, VideoSampling(num_frames=4, backend=backend, seek_mode=seek_mode))
    assert sampled.frames.shape == (4, 3, 48, 64)
    assert sampled.num_source_frames == 200
    times = sampled.timestamps
    assert times == sorted(set(times))
    assert sampled.duration == pytest.approx(20.0, abs=0.2)
