"""The default pixel budget per frame, and frames over it resized as they are decoded, a few at a time, so a huge
video costs what its budget does in memory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from safevid.testing.videos import make_test_video
from safevid.video import VideoSampling, api, sample_video
from safevid.video.sampling import DEFAULT_MAX_PIXELS


def test_the_default_budget_is_the_largest_the_families_processors_keep():
    from transformers import LlavaOnevisionVideoProcessor, Qwen2VLVideoProcessor, Qwen3VLVideoProcessor

    budgets = {
        "qwen2_vl": Qwen2VLVideoProcessor.size["longest_edge"],  # Qwen2.5-VL uses the same video processor
        "qwen3_vl": Qwen3VLVideoProcessor.size["longest_edge"],
        "llava_onevision": LlavaOnevisionVideoProcessor.size["height"]
        * LlavaOnevisionVideoProcessor.size["width"],
    }
    assert VideoSampling().max_pixels == DEFAULT_MAX_PIXELS == max(budgets.values()) == 786_432
    assert VideoSampling(max_pixels=None).max_pixels is None  # the source size, on request


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_frames_over_the_budget_are_resized_as_they_are_read_with_the_same_pixels(
    tmp_path, monkeypatch, backend
):
    video = make_test_video(tmp_path / "clip.mp4", width=160, height=96, duration=2.0)
    sampling = VideoSampling(num_frames=8, max_pixels=40 * 24, backend=backend)
    whole = sample_video(video, sampling)
    assert whole.frames.shape == (8, 3, 24, 40)

    reads: list[int] = []
    real_open = api.open_decoder

    def recording(*args, **kwargs):
        decoder = real_open(*args, **kwargs)
        frames_at = decoder.frames_at

        def counted(timestamps):
            reads.append(len(timestamps))
            return frames_at(timestamps)

        decoder.frames_at = counted
        return decoder

    monkeypatch.setattr(api, "open_decoder", recording)
    monkeypatch.setattr(api, "LARGE_FRAME_BYTES", 3 * 160 * 96 * 3)  # room for three full-size frames
    pieces = sample_video(video, sampling)
    assert reads == [3, 3, 2]  # never more than three full-size frames at once
    assert pieces.timestamps == whole.timestamps
    assert (pieces.frames == whole.frames).all()  # resizing per frame: reading in pieces changes no pixel


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_an_8192x8192_clip_costs_under_1_gb(tmp_path, backend):
    """Measured in a fresh process: the peak resident memory of sampling 8 frames, above that of the imports."""
    import av
    import numpy as np

    path = tmp_path / "huge.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=5, options={"preset": "ultrafast"})
        stream.width = stream.height = 8192
        stream.pix_fmt = "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((8192, 8192, 3), i * 20, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    script = (
        "import resource, sys\n"
        "from safevid.video import VideoSampling, sample_video\n"
        "import torchvision.transforms.v2.functional, av\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "video = sample_video(sys.argv[1], VideoSampling(num_frames=8, backend=sys.argv[2]))\n"
        "assert video.frames.shape == (8, 3, 886, 886), video.frames.shape\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), backend], capture_output=True, text=True, check=True
    )
    assert int(done.stdout.split()[-1]) < 1 << 30
