"""`safevid.video`: the sampling config, which frames come back, every input type, both backends."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from safevid.testing.videos import encoder_available, frame_times, make_test_video, read_frame_index
from safevid.video import SampledVideo, VideoDecodeError, VideoSampling, probe_video, sample_video
from safevid.video.sampling import segment_centres, target_size

BACKENDS = ("torchcodec", "pyav")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    made = {
        "cfr": make_test_video(root / "cfr.mp4", duration=2.0, fps=10.0),  # 20 frames, keyframe every 1 s
        "wide": make_test_video(root / "wide.mp4", width=640, height=360, duration=1.0, fps=10.0),
        "vp9": make_test_video(root / "vp9.webm", codec="vp9"),
        "mpeg4": make_test_video(root / "mpeg4.avi", codec="mpeg4"),
        "vfr": make_test_video(root / "vfr.mkv", variable_frame_rate=True, duration=2.0, fps=10.0),
        "rot90": make_test_video(root / "rot90.mp4", rotation=90),
        "rot270": make_test_video(root / "rot270.mov", rotation=270),
        "one": make_test_video(root / "one.mp4", duration=0.1, fps=10.0),
        "five": make_test_video(root / "five.mp4", duration=0.5, fps=10.0),
        "audio": make_test_video(root / "audio.mp4", audio=True),
    }
    if encoder_available("hevc")[0]:
        made["hevc"] = make_test_video(root / "hevc.mp4", codec="hevc")
    return made


def expected_indices(num_source: int, fps: float, count: int) -> list[int]:
    return [math.floor(t * fps + 1e-9) for t in segment_centres(0.0, num_source / fps, count)]


# --- the config ---------------------------------------------------------------------------


def test_sampling_defaults_and_exactly_one_of_frames_or_fps():
    assert VideoSampling().num_frames == 8
    assert VideoSampling(fps=2.0).num_frames is None
    with pytest.raises(ValueError, match="exactly one"):
        VideoSampling(num_frames=8, fps=1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 0}, "num_frames"),
        ({"fps": -1.0}, "fps"),
        ({"num_frames": 16, "max_frames": 8}, "exceeds max_frames"),
        ({"num_frames": 4, "min_frames": 5}, "min_frames"),
        ({"max_pixels": 3}, "max_pixels"),
        ({"backend": "decord"}, "backend"),
        ({"seek_mode": "fast"}, "seek_mode"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_sampling_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VideoSampling(**kwargs)


def test_sampling_round_trips_through_json_and_rejects_unknown_keys():
    sampling = VideoSampling(fps=1.5, max_frames=32, max_pixels=200_000, backend="pyav", timeout_s=3.0)
    data = json.loads(json.dumps(sampling.to_dict()))
    assert VideoSampling.from_dict(data) == sampling
    with pytest.raises(ValueError, match=r"Unknown VideoSampling keys \['frame_rate'\]"):
        VideoSampling.from_dict({**data, "frame_rate": 2})


def test_frame_count_in_fps_mode_is_floored_and_capped():
    assert VideoSampling(fps=2.0).frame_count(10.0) == 20
    assert VideoSampling(fps=3.0).frame_count(2.0) == 6  # 5.9999 from float noise still gives 6
    assert VideoSampling(fps=2.0, max_frames=5).frame_count(10.0) == 5
    assert VideoSampling(fps=0.1).frame_count(2.0) == 1
    assert VideoSampling(num_frames=4).frame_count(1000.0) == 4


def test_segment_centres_are_uniform_and_inside_the_interval():
    times = segment_centres(1.0, 3.0, 4)
    assert times == pytest.approx([1.25, 1.75, 2.25, 2.75])
    assert all(1.0 <= t < 3.0 for t in times)


def test_target_size_keeps_aspect_and_budget():
    assert target_size(640, 360, None) == (640, 360)
    assert target_size(640, 360, 640 * 360) == (640, 360)
    width, height = target_size(1920, 1080, 200_000)
    assert width * height <= 200_000
    assert width % 2 == 0
    assert height % 2 == 0
    assert width / height == pytest.approx(16 / 9, rel=0.02)
    assert target_size(4000, 2, 100)[0] * target_size(4000, 2, 100)[1] <= 100


# --- which frames come back ----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seek_mode", ["exact", "approximate"])
def test_uniform_timestamps_map_to_the_right_frames(videos, backend, seek_mode):
    video = sample_video(videos["cfr"], VideoSampling(num_frames=8, backend=backend, seek_mode=seek_mode))
    expected = expected_indices(20, 10.0, 8)
    assert video.frames.dtype == torch.uint8
    assert video.frames.shape == (8, 3, 96, 160)
    assert [read_frame_index(frame) for frame in video.frames] == expected
    assert video.indices == expected
    assert video.timestamps == pytest.approx([i / 10 for i in expected])
    assert all(a < b for a, b in itertools.pairwise(video.timestamps))
    assert (video.source_fps, video.duration, video.num_source_frames) == (
        pytest.approx(10.0),
        pytest.approx(2.0),
        20,
    )
    assert (video.width, video.height, video.backend, video.fallback) == (160, 96, backend, None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_mode_and_max_frames_cap(videos, backend):
    video = sample_video(videos["cfr"], VideoSampling(fps=2.0, backend=backend))
    assert [read_frame_index(f) for f in video.frames] == expected_indices(20, 10.0, 4)
    assert video.sampled_fps == pytest.approx(2.0)
    capped = sample_video(videos["cfr"], VideoSampling(fps=5.0, max_frames=3, backend=backend))
    assert capped.num_frames == 3
    assert capped.requested_frames == 3
    assert capped.sampled_fps == pytest.approx(1.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pixel_budget_downscales_keeping_aspect(videos, backend):
    video = sample_video(videos["wide"], VideoSampling(num_frames=4, max_pixels=160 * 90, backend=backend))
    assert video.frames.shape == (4, 3, 90, 160)
    assert (video.width, video.height) == (640, 360)  # the source size is kept in the metadata
    assert [read_frame_index(f) for f in video.frames] == video.indices


@pytest.mark.parametrize("name", ["cfr", "vp9", "mpeg4", "hevc", "vfr", "rot90", "rot270", "audio"])
def test_both_backends_give_the_same_frames(videos, name):
    if name not in videos:
        pytest.skip(encoder_available("hevc")[1])
    sampling = VideoSampling(num_frames=6)
    by_torchcodec = sample_video(videos[name], sampling)
    by_pyav = sample_video(videos[name], VideoSampling(num_frames=6, backend="pyav"))
    assert by_torchcodec.timestamps == pytest.approx(by_pyav.timestamps, abs=1e-6)
    assert by_torchcodec.indices == by_pyav.indices
    assert by_torchcodec.frames.shape == by_pyav.frames.shape
    difference = (by_torchcodec.frames.float() - by_pyav.frames.float()).abs()
    assert difference.mean() < 1.0, f"mean abs difference {difference.mean():.2f} between backends"


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_returns_the_frame_on_screen(videos, backend):
    schedule = frame_times(2.0, 10.0, variable_frame_rate=True)
    video = sample_video(videos["vfr"], VideoSampling(num_frames=8, backend=backend))
    planned = segment_centres(0.0, schedule[-1][0] + schedule[-1][1], 8)
    for frame, timestamp, target in zip(video.frames, video.timestamps, planned, strict=True):
        start, length = schedule[read_frame_index(frame)]
        assert timestamp == pytest.approx(start, abs=1e-3)  # the reported time is the frame's own
        assert start <= target + 1e-6 < start + length  # ... and that frame is on screen at the target


def test_approximate_seeks_on_a_variable_frame_rate_mp4_name_the_fix(tmp_path):
    # torchcodec 0.17 maps times to indices by the header's rate in approximate mode, past the stream's end here.
    path = make_test_video(tmp_path / "vfr.mp4", variable_frame_rate=True, duration=4.0, fps=30.0)
    with pytest.raises(VideoDecodeError, match=r"vfr\.mp4.*use seek_mode='exact', or backend='pyav'"):
        sample_video(path, VideoSampling(num_frames=8, seek_mode="approximate"))
    assert (
        len(sample_video(path, VideoSampling(num_frames=8, seek_mode="approximate", backend="pyav")).frames)
        == 8
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_variable_frame_rate_with_enough_frames_gives_the_asked_count(tmp_path, backend, suffix):
    # 20 frames lasting 0.05-0.15 s: 16 equal segments of 0.125 s put two centres on some 0.15 s frames.
    path = make_test_video(tmp_path / f"vfr{suffix}", variable_frame_rate=True, duration=2.0, fps=10.0)
    schedule = frame_times(2.0, 10.0, variable_frame_rate=True)
    video = sample_video(path, VideoSampling(num_frames=16, backend=backend))
    shown = [read_frame_index(frame) for frame in video.frames]
    assert (len(shown), video.fallback) == (16, "frame_indices")
    assert shown == [math.floor((i + 0.5) * 20 / 16) for i in range(16)]  # distinct, evenly spaced indices
    assert video.timestamps == pytest.approx([schedule[i][0] for i in shown], abs=1e-3)


@pytest.mark.parametrize("duration", [2.0, 19.5])
def test_both_backends_agree_on_a_variable_frame_rate_mp4(tmp_path, duration):
    # MP4 with reordered frames: torchcodec timed the last frame by the nominal rate (end 1.95 s, not 2.0 s)
    # and PyAV seeked by decode time onto a keyframe shown after the target (frame 104 for 103 at 10.36 s).
    path = make_test_video(tmp_path / "vfr.mp4", variable_frame_rate=True, duration=duration, fps=10.0)
    probes = [probe_video(path, VideoSampling(backend=backend)) for backend in BACKENDS]
    assert [(p.duration, p.num_frames) for p in probes] == [(pytest.approx(duration), duration * 10)] * 2
    sampled = [sample_video(path, VideoSampling(num_frames=16, backend=backend)) for backend in BACKENDS]
    schedule = frame_times(duration, 10.0, variable_frame_rate=True)
    for video in sampled:  # each frame is the one on screen at its segment's centre (or, on repeats, index)
        shown = [read_frame_index(f) for f in video.frames]
        if video.fallback is None:
            centres = segment_centres(0.0, duration, 16)
            assert all(schedule[i][0] <= t < sum(schedule[i]) for i, t in zip(shown, centres, strict=True))
    assert [read_frame_index(f) for f in sampled[0].frames] == [
        read_frame_index(f) for f in sampled[1].frames
    ]
    assert sampled[0].timestamps == pytest.approx(sampled[1].timestamps, abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "corner"), [("rot90", "bottom-left"), ("rot270", "top-right")])
def test_rotation_metadata_is_applied(videos, backend, name, corner):
    from safevid.testing.videos import marker_corner

    video = sample_video(videos[name], VideoSampling(num_frames=3, backend=backend))
    assert video.frames.shape[-2:] == (160, 96)  # coded 160x96, displayed upright as 96 wide
    assert (video.width, video.height, video.rotation % 360) == (96, 160, int(name[3:]))
    assert {marker_corner(frame) for frame in video.frames} == {corner}
    assert [read_frame_index(f) for f in video.frames] == video.indices


@pytest.mark.parametrize("backend", BACKENDS)
def test_fewer_frames_than_asked_returns_all_distinct_frames(videos, backend):
    video = sample_video(videos["five"], VideoSampling(num_frames=8, backend=backend))
    assert [read_frame_index(f) for f in video.frames] == [0, 1, 2, 3, 4]
    assert (video.fallback, video.requested_frames, video.num_frames) == ("all_frames", 8, 5)
    assert video.metadata()["fallback"] == "all_frames"
    single = sample_video(videos["one"], VideoSampling(num_frames=8, backend=backend))
    assert single.frames.shape[0] == 1
    assert single.sampled_fps == pytest.approx(10.0)
    with pytest.raises(VideoDecodeError, match="only 5 distinct frame"):
        sample_video(videos["five"], VideoSampling(num_frames=8, min_frames=6, backend=backend))


# --- inputs -------------------------------------------------------------------------------


def test_every_input_type_gives_the_same_frames(videos):
    from datasets import Dataset, Video
    from torchcodec.decoders import VideoDecoder

    path = videos["cfr"]
    reference = sample_video(path)
    data = path.read_bytes()
    dataset = Dataset.from_dict({"video": [str(path)]}).cast_column("video", Video())
    embedded = Dataset.from_dict({"video": [{"path": None, "bytes": data}]}).cast_column("video", Video())
    raw = Dataset.from_dict({"video": [str(path)]}).cast_column("video", Video(decode=False))
    inputs = {
        "str": str(path),
        "Path": path,
        "bytes": data,
        "datasets VideoDecoder": dataset[0]["video"],
        "datasets VideoDecoder (bytes)": embedded[0]["video"],
        "datasets dict": raw[0]["video"],
        "bytes dict": {"path": "clip.mp4", "bytes": data},
        "plain VideoDecoder": VideoDecoder(str(path)),
    }
    for label, value in inputs.items():
        video = sample_video(value)
        assert video.indices == reference.indices, label
        assert torch.equal(video.frames, reference.frames), label
    assert "clip.mp4" in sample_video({"path": "clip.mp4", "bytes": data}).source


def test_frames_input_uses_the_given_fps(videos):
    decoded = sample_video(videos["cfr"], VideoSampling(num_frames=20))  # all 20 frames
    as_hwc = decoded.frames.permute(0, 2, 3, 1).numpy()
    for value in (decoded.frames, as_hwc, list(as_hwc)):
        video = sample_video(value, VideoSampling(num_frames=4), frames_fps=10.0)
        assert [read_frame_index(f) for f in video.frames] == expected_indices(20, 10.0, 4)
        assert video.backend == "frames"
        assert video.source_fps == 10.0
        assert video.duration == pytest.approx(2.0)
    default = sample_video(as_hwc, VideoSampling(num_frames=4))
    assert default.source_fps == 24.0  # transformers' assumption for videos without metadata
    with pytest.raises(VideoDecodeError, match="uint8"):
        sample_video(np.zeros((2, 8, 8, 3), dtype=np.float32))


# --- metadata -----------------------------------------------------------------------------


def test_metadata_is_json_and_feeds_transformers(videos):
    video = sample_video(videos["cfr"], VideoSampling(num_frames=5))
    assert isinstance(video, SampledVideo)
    record = json.loads(json.dumps(video.metadata()))
    assert record["indices"] == video.indices
    assert record["num_frames"] == 5
    assert VideoSampling.from_dict(record["sampling"]) == video.sampling
    meta = video.transformers_metadata()
    # Qwen2-VL / Qwen2.5-VL read `sampled_fps` for their temporal position ids.
    assert meta.sampled_fps == pytest.approx(video.sampled_fps) == pytest.approx(2.5)
    assert meta.timestamps == pytest.approx(video.timestamps)
    assert (meta.total_num_frames, meta.fps, meta.video_backend) == (20, pytest.approx(10.0), "torchcodec")


@pytest.mark.parametrize("backend", BACKENDS)
def test_probe_reads_the_stream_without_sampling(videos, backend):
    probe = probe_video(videos["rot90"], VideoSampling(backend=backend))
    assert (probe.width, probe.height, probe.num_frames, probe.codec) == (96, 160, 20, "h264")
    assert probe.duration == pytest.approx(2.0)
    assert probe.fps == pytest.approx(10.0)
    assert probe.rotation == 90
