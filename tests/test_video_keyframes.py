"""`VideoSampling(positions="keyframe")`: the planning arithmetic, then real decodes of videos with a known GOP."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from safevid.testing.videos import make_test_video, read_frame_index
from safevid.video import VideoSampling, sample_video
from safevid.video.frame_store import frame_key
from safevid.video.sampling import nearest_keyframes, segment_centres

BACKENDS = ("torchcodec", "pyav")
SEEK_MODES = ("exact", "approximate")
KEYFRAMES = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]  # the GOP videos below: 12 s at 10 fps, a keyframe every 2 s


# --- planning --------------------------------------------------------------------------------


def test_each_centre_lands_on_its_nearest_keyframe():
    centres = segment_centres(0.0, 12.0, 4)  # 1.5, 4.5, 7.5, 10.5
    assert nearest_keyframes(centres, KEYFRAMES) == [2.0, 4.0, 8.0, 10.0]


def test_a_shared_keyframe_goes_to_the_closest_centre_and_the_others_stay_exact():
    centres = segment_centres(0.0, 12.0, 8)  # 0.75, 2.25, ..., 11.25
    # 6.0 is 0.75 s from both 5.25 and 6.75 (the earlier centre keeps it); 10.0 is nearer 9.75 than 11.25.
    assert nearest_keyframes(centres, KEYFRAMES) == [0.0, 2.0, 4.0, 6.0, None, 8.0, 10.0, None]


def test_fewer_keyframes_than_samples_and_no_keyframes():
    centres = segment_centres(0.0, 30.0, 8)  # a 30 s clip with a keyframe every 10 s
    assert nearest_keyframes(centres, [0.0, 10.0, 20.0]) == [0.0, None, 10.0, None, None, 20.0, None, None]
    assert nearest_keyframes(centres, []) == [None] * 8


def test_planned_positions_are_distinct_ascending_and_nearest():
    rng = random.Random(0)
    for _ in range(500):
        duration = rng.uniform(0.5, 60.0)
        keyframes = sorted(rng.uniform(0.0, duration) for _ in range(rng.randint(1, 30)))
        centres = segment_centres(0.0, duration, rng.randint(1, 40))
        landed = nearest_keyframes(centres, keyframes)
        positions = [centre if key is None else key for centre, key in zip(centres, landed, strict=True)]
        assert all(a < b for a, b in itertools.pairwise(positions)), (centres, keyframes)
        taken = [key for key in landed if key is not None]
        assert len(set(taken)) == len(taken)
        for centre, key in zip(centres, landed, strict=True):
            nearest = min(abs(k - centre) for k in keyframes)
            if key is not None:
                assert abs(key - centre) == nearest
            else:  # its nearest keyframe went to a centre at least as close
                rival = min(keyframes, key=lambda k: (abs(k - centre), k))
                winner = centres[landed.index(rival)]
                assert abs(rival - winner) <= abs(rival - centre)


# --- the config ------------------------------------------------------------------------------


def test_positions_default_to_exact_and_are_validated():
    assert VideoSampling().positions == "exact"
    with pytest.raises(ValueError, match=r"positions must be one of \('exact', 'keyframe'\), got 'nearest'"):
        VideoSampling(positions="nearest")


def test_dicts_stored_before_the_field_still_load():
    stored = VideoSampling().to_dict()
    del stored["positions"]
    assert VideoSampling.from_dict(stored) == VideoSampling()
    keyframe = VideoSampling(positions="keyframe")
    assert VideoSampling.from_dict(keyframe.to_dict()) == keyframe
    # Frames sampled one way are never served for the other, and frame stores written before the field keep
    # their keys (these are the keys of the commit before it). Rows store their sampling whole, the pixel budget
    # too, so rows written when it defaulted to none (`max_pixels: null`) keep their keys under today's default.
    assert frame_key("video", keyframe) != frame_key("video", VideoSampling())
    unbounded = VideoSampling(max_pixels=None)
    assert frame_key("video", VideoSampling.from_dict(unbounded.to_dict())) == (
        "7f1ee02a91182d251b7f652cf0de6789005df6024a61cf0f8463f7710c3cd17c"
    )
    assert (
        frame_key("video", VideoSampling(num_frames=16, backend="pyav", timeout_s=3, max_pixels=None))
        == "36a84aef6409ee7d951d9e47b6b7ab00e752d149fe09cff87585d528f1a974aa"
    )
    # Frames under the budget differ from unbounded ones for large videos: their key must differ.
    assert frame_key("video", VideoSampling()) != frame_key("video", unbounded)


# --- decoding --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gop_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("gop")
    # H.264 with B-frames in MP4 (index times are decode times) and MKV (cues load on the first seek), VP9 in WebM.
    return {
        "mp4": make_test_video(root / "gop.mp4", duration=12.0, gop_seconds=2.0, exact_gop=True),
        "mkv": make_test_video(root / "gop.mkv", duration=12.0, gop_seconds=2.0, exact_gop=True),
        "webm": make_test_video(root / "gop.webm", codec="vp9", duration=12.0, gop_seconds=2.0),
    }


@pytest.mark.parametrize("container", ["mp4", "mkv", "webm"])
@pytest.mark.parametrize("seek_mode", SEEK_MODES)
def test_samples_land_on_keyframes_and_both_backends_agree(gop_videos, container, seek_mode):
    videos = [
        sample_video(
            gop_videos[container],
            VideoSampling(num_frames=4, backend=backend, seek_mode=seek_mode, positions="keyframe"),
        )
        for backend in BACKENDS
    ]
    for video in videos:
        assert video.timestamps == pytest.approx([2.0, 4.0, 8.0, 10.0])
        assert [read_frame_index(f) for f in video.frames] == [20, 40, 80, 100]
        assert video.indices == [20, 40, 80, 100]
        assert video.fallback is None
    assert videos[0].timestamps == videos[1].timestamps
    assert torch.equal(videos[0].frames, videos[1].frames)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_keyframe_shortage_takes_the_rest_exactly_and_says_so(gop_videos, backend):
    video = sample_video(
        gop_videos["mp4"], VideoSampling(num_frames=8, backend=backend, positions="keyframe")
    )
    # Six samples on keyframes; 6.75 s and 11.25 s lost theirs to a closer centre and show the frame on screen.
    assert [read_frame_index(f) for f in video.frames] == [0, 20, 40, 60, 67, 80, 100, 112]
    assert video.fallback == "exact_positions"


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_stays_the_default(gop_videos, backend):
    video = sample_video(gop_videos["mp4"], VideoSampling(num_frames=4, backend=backend))
    assert [read_frame_index(f) for f in video.frames] == [15, 45, 75, 105]  # the segment centres
    assert video.fallback is None


def test_decoded_frames_keep_exact_positions(gop_videos):
    frames = sample_video(gop_videos["mp4"], VideoSampling(num_frames=120)).frames  # every frame
    exact = sample_video(frames, VideoSampling(num_frames=4), frames_fps=10.0)
    keyframe = sample_video(frames, VideoSampling(num_frames=4, positions="keyframe"), frames_fps=10.0)
    assert keyframe.indices == exact.indices == [15, 45, 75, 105]
    assert keyframe.fallback is None


def test_an_open_decoder_without_a_file_keeps_exact_positions_and_says_so(gop_videos):
    from torchcodec.decoders import VideoDecoder

    video = sample_video(
        VideoDecoder(str(gop_videos["mp4"])), VideoSampling(num_frames=4, positions="keyframe")
    )
    assert video.indices == [15, 45, 75, 105]
    assert video.fallback == "exact_positions"
