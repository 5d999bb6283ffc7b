"""`safevid.testing.videos` (the test-video generator) and the `make-videos` / `sample` commands."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from safevid.cli import main
from safevid.testing.__main__ import main as kit_main
from safevid.testing.videos import (
    BAD_KINDS,
    MAX_INDEX,
    encoder_available,
    expected_frame_count,
    frame_times,
    make_test_video,
    marker_corner,
    pattern_frame,
    read_frame_index,
)
from safevid.video import VideoSampling, probe_video


@pytest.mark.parametrize("pattern", ["index", "textured"])
def test_pattern_round_trips_through_resize_and_rotation(pattern):
    import torch
    from torchvision.transforms.v2 import functional

    for index in (0, 1, 1234, MAX_INDEX):
        image = pattern_frame(index, 64, 48, pattern)
        assert read_frame_index(image) == index
        assert read_frame_index(np.rot90(image, k=1)) == index
        small = functional.resize(torch.from_numpy(image).permute(2, 0, 1), [24, 32], antialias=True)
        assert read_frame_index(small) == index
    assert marker_corner(np.rot90(pattern_frame(5, 64, 48), k=1)) == "bottom-left"
    with pytest.raises(ValueError, match="orientation marker"):
        read_frame_index(np.zeros((48, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="does not fit"):
        pattern_frame(MAX_INDEX + 1, 64, 48)


def test_frame_schedules():
    assert len(frame_times(2.0, 10.0)) == expected_frame_count(2.0, 10.0) == 20
    assert len(frame_times(0.01, 10.0)) == 1  # at least one frame
    vfr = frame_times(2.0, 10.0, variable_frame_rate=True)
    assert {round(length, 6) for _, length in vfr} == {0.05, 0.1, 0.15}
    assert all(a[0] + a[1] == pytest.approx(b[0]) for a, b in itertools.pairwise(vfr))


@pytest.mark.parametrize(
    ("codec", "suffix"), [("h264", ".mp4"), ("vp9", ".webm"), ("mpeg4", ".avi"), ("hevc", ".mkv")]
)
def test_each_codec_and_container_decodes_to_its_pattern(tmp_path, codec, suffix):
    available, reason = encoder_available(codec)
    if not available:
        pytest.skip(reason)
    path = make_test_video(
        tmp_path / f"clip{suffix}", codec=codec, width=96, height=64, duration=1.0, fps=8.0
    )
    probe = probe_video(path)
    assert (probe.codec, probe.width, probe.height, probe.num_frames) == (codec, 96, 64, 8)
    assert probe.duration == pytest.approx(1.0)


def test_rotation_audio_and_vfr_are_written(tmp_path):
    rotated = probe_video(make_test_video(tmp_path / "r.mp4", rotation=-90, width=64, height=32))
    assert (rotated.rotation, rotated.width, rotated.height) == (-90, 32, 64)
    import av

    with av.open(str(make_test_video(tmp_path / "a.mp4", audio=True))) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
    vfr = probe_video(make_test_video(tmp_path / "v.mkv", variable_frame_rate=True, duration=1.0, fps=10.0))
    assert vfr.num_frames == len(frame_times(1.0, 10.0, True))


def test_generator_rejects_impossible_requests(tmp_path):
    with pytest.raises(ValueError, match="even"):
        make_test_video(tmp_path / "x.mp4", width=33)
    with pytest.raises(ValueError, match="Unknown codec"):
        make_test_video(tmp_path / "x.mp4", codec="prores")
    with pytest.raises(ValueError, match="multiple of 90"):
        make_test_video(tmp_path / "x.mp4", rotation=45)


def test_make_videos_and_sample_commands(tmp_path, capsys):
    assert kit_main(["make-videos", str(tmp_path)]) == 0
    listed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line)
    assert {f"bad_{kind}" for kind in BAD_KINDS} <= {name.rsplit(".", 1)[0] for name in listed}
    assert (
        main(["sample", str(tmp_path / "h264_rotated90.mp4"), "--num-frames", "4", "--backend", "pyav"]) == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert (record["num_frames"], record["width"], record["height"], record["backend"]) == (
        4,
        96,
        160,
        "pyav",
    )
    assert VideoSampling.from_dict(record["sampling"]).num_frames == 4
    assert (
        main(["sample", str(tmp_path / "h264_rotated90.mp4"), "--num-frames", "2", "--positions", "keyframe"])
        == 0
    )
    assert VideoSampling.from_dict(json.loads(capsys.readouterr().out)["sampling"]).positions == "keyframe"
    assert main(["sample", str(tmp_path / "bad_garbage.mp4")]) == 1
    assert "bad_garbage.mp4" in capsys.readouterr().err


def _keyframe_indices(path, fps: float) -> list[int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(
            round(float(packet.pts * packet.time_base) * fps)
            for packet in container.demux(stream)
            if packet.pts is not None and packet.is_keyframe
        )


def test_exact_gop_puts_keyframes_on_the_grid_only(tmp_path):
    # The textured pattern changes every 256 frames: x264 adds a scene-cut keyframe there unless told not to.
    kwargs = {
        "width": 64,
        "height": 48,
        "duration": 20.0,
        "fps": 30.0,
        "pattern": "textured",
        "gop_seconds": 2.0,
    }
    exact = _keyframe_indices(make_test_video(tmp_path / "exact.mp4", exact_gop=True, **kwargs), 30.0)
    assert exact == list(range(0, 600, 60))
    default = _keyframe_indices(make_test_video(tmp_path / "default.mp4", **kwargs), 30.0)
    assert any(k % 60 for k in default)  # scene-cut keyframes off the grid: what the exact mode removes
