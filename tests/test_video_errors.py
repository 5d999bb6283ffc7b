"""Bad video input: every case is a `VideoDecodeError` naming the source and the cause; nothing hangs."""

from __future__ import annotations

import os

import pytest

from safevid.testing.videos import BAD_KINDS, make_bad_video, make_test_video, read_frame_index
from safevid.video import VideoDecodeError, VideoSampling, probe_video, sample_video

CAUSES = {
    "zero_bytes": "empty",
    "garbage": "not a readable video container",
    "truncated": "not a readable video container",
    "corrupt_header": "no streams found",
    "audio_only": r"no video stream \(streams: audio/aac\)",
    "unsupported_codec": "unsupported codec",
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    return {
        kind: make_bad_video(root / f"{kind}.{'m4a' if kind == 'audio_only' else 'mp4'}", kind)
        for kind in BAD_KINDS
    }


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_files_raise_a_named_error(bad_files, kind, backend):
    path = bad_files[kind]
    with pytest.raises(VideoDecodeError, match=CAUSES[kind]) as caught:
        sample_video(path, VideoSampling(backend=backend))
    assert isinstance(caught.value, ValueError)
    assert caught.value.source == str(path)
    assert str(path) in str(caught.value)
    with pytest.raises(VideoDecodeError, match=CAUSES[kind]):
        probe_video(path, VideoSampling(backend=backend))


def test_missing_file_directory_and_empty_bytes(tmp_path):
    with pytest.raises(VideoDecodeError, match="file not found") as caught:
        sample_video(tmp_path / "nope.mp4")
    assert str(tmp_path / "nope.mp4") in str(caught.value)
    with pytest.raises(VideoDecodeError, match="is a directory"):
        sample_video(tmp_path)
    with pytest.raises(VideoDecodeError, match="empty"):
        sample_video(b"")
    with pytest.raises(VideoDecodeError, match="neither"):
        sample_video({"path": None, "bytes": None})
    with pytest.raises(TypeError, match="Unsupported video input"):
        sample_video(42)


def test_garbage_bytes_name_the_input(bad_files):
    data = bad_files["garbage"].read_bytes()
    with pytest.raises(VideoDecodeError, match=rf"<{len(data)} bytes>: not a readable video container"):
        sample_video(data)


def test_truncated_media_data_with_an_intact_index_is_an_error(tmp_path):
    # moov first (faststart), media data cut: the container opens, the frames are missing.
    whole = make_test_video(tmp_path / "whole.mp4", duration=4.0, faststart=True).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    for backend in ("torchcodec", "pyav"):
        with pytest.raises(VideoDecodeError, match=r"cut\.mp4"):
            sample_video(cut, VideoSampling(backend=backend))


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_damage_in_the_middle_of_a_readable_file_names_the_time_and_the_cause(tmp_path, backend):
    data = bytearray(make_test_video(tmp_path / "whole.mp4", duration=19.5, fps=10.0).read_bytes())
    for i in range(len(data) // 3, 2 * len(data) // 3):  # the header and the first seconds stay intact
        data[i] = (data[i] * 7 + 13) % 256
    damaged = tmp_path / "damaged.mp4"  # the index (moov, written last) stays intact
    damaged.write_bytes(bytes(data))
    assert probe_video(damaged, VideoSampling(backend=backend)).num_frames == 195  # it opens fine
    with pytest.raises(
        VideoDecodeError, match=r"damaged\.mp4: at \d+\.\d{3} s: corrupt data in the video stream"
    ):
        sample_video(damaged, VideoSampling(num_frames=16, backend=backend))


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "never-written.mp4"
    os.mkfifo(path)
    return path


def test_a_pipe_is_refused_without_a_timeout(fifo):
    with pytest.raises(VideoDecodeError, match="not a regular file"):
        sample_video(fifo)


def test_a_hanging_source_times_out_and_the_next_call_works(fifo, tmp_path):
    # The worker blocks in open() on a FIFO that never gets a writer, as on a stalled network
    # mount; the caller gets an error after timeout_s instead of hanging.
    with pytest.raises(VideoDecodeError, match=r"timed out after 1.5 s") as caught:
        sample_video(fifo, VideoSampling(timeout_s=1.5))
    assert str(fifo) in str(caught.value)
    # The killed worker is replaced, and a decode through the worker equals the in-process one.
    good = make_test_video(tmp_path / "good.mp4")
    bounded = sample_video(good, VideoSampling(num_frames=4, timeout_s=60.0))
    local = sample_video(good, VideoSampling(num_frames=4))
    assert bounded.indices == local.indices == [read_frame_index(f) for f in bounded.frames]
    assert (bounded.frames == local.frames).all()
    # Errors raised inside the worker arrive as the same VideoDecodeError.
    with pytest.raises(VideoDecodeError, match="empty"):
        sample_video(b"", VideoSampling(timeout_s=60.0))
    with pytest.raises(VideoDecodeError, match="only 20 distinct"):
        sample_video(good, VideoSampling(num_frames=30, min_frames=25, timeout_s=60.0))
