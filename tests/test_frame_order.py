"""Frame order and timing reach every supported family's model intact (issue 19).

For each family's tiny checkpoint, the inputs built from a `safevid.video.SampledVideo` (`video_processor_inputs`,
as training and the transformers backend build them) are compared between the frames as sampled, the same frames
reversed (`ablated(..., "reverse")`, what `safevid eval --video-ablation reverse` shows a model), and the same
frames sampled at another rate:

- reversed: the pixel tensors hold the same frames in the opposite order (for the Qwen families, whose patches
  span two frames, the temporal patches in the opposite order with their two frames swapped); the grid, the
  prompt and the temporal position ids are unchanged, since the timestamps are those of the sampling;
- another sampling rate: the inputs change exactly for the families whose positions follow the sampled fps
  (`VideoFamily.needs_sampled_fps`: Qwen2.5-VL's ``second_per_grid_ts`` and M-RoPE ids, Qwen3-VL's timestamps in
  the prompt), and not for those that place frames by their order alone (Qwen2-VL, both LLaVA families).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from safevid.backends.prepared import ablated
from safevid.families import FAMILIES, video_processor_inputs
from safevid.testing.tiny_models import VIDEO_FAMILIES, build_tiny_model
from safevid.video import VideoSampling, sample_video

FRAMES = 8


def _video(fps: float):
    """Eight distinct random frames, sampled as a clip of `fps` frames per second."""
    frames = np.random.default_rng(0).integers(0, 256, (FRAMES, 56, 56, 3), dtype=np.uint8)
    return sample_video(frames, VideoSampling(num_frames=FRAMES), frames_fps=fps)


@pytest.fixture(scope="module", params=VIDEO_FAMILIES)
def family(request):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = build_tiny_model(request.param)
    return (
        request.param,
        AutoModelForImageTextToText.from_pretrained(path),
        AutoProcessor.from_pretrained(path),
    )


def _inputs(processor, video) -> dict[str, torch.Tensor]:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return dict(processor(text=[prompt], **video_processor_inputs(processor, [video]), return_tensors="pt"))


def _temporal_ids(model, inputs) -> list[int] | None:
    """The M-RoPE temporal position of each video token (the Qwen families), else `None`."""
    if "mm_token_type_ids" not in inputs:
        return None
    extra = {"second_per_grid_ts": inputs["second_per_grid_ts"]} if "second_per_grid_ts" in inputs else {}
    position_ids, _ = model.model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        attention_mask=inputs["attention_mask"],
        **extra,
    )
    return position_ids[0, 0, inputs["input_ids"][0] == model.config.video_token_id].tolist()


def _reversed_pixels(name: str, processor, pixels: torch.Tensor, grid: torch.Tensor | None) -> torch.Tensor:
    """What the pixel tensor of the reversed frames must be, computed from that of the frames as sampled."""
    if grid is None:  # LLaVA families: (batch, frames, channels, height, width)
        return pixels.flip(1)
    # Qwen families: one row per patch, time-major; a row is (channels, temporal patch, patch pixels).
    temporal_patch = processor.video_processor.temporal_patch_size
    grid_t = int(grid[0, 0])
    patches = pixels.reshape(grid_t, -1, 3, temporal_patch, pixels.shape[1] // (3 * temporal_patch))
    return patches.flip(0).flip(3).reshape(pixels.shape)


def test_reversed_frames_reach_the_model_reversed_with_the_same_timing(family):
    name, model, processor = family
    video = _video(fps=8.0)
    real, reverse = _inputs(processor, video), _inputs(processor, ablated(video, "reverse"))
    assert real.keys() == reverse.keys()
    grid = real.get("video_grid_thw")
    expected = _reversed_pixels(name, processor, real["pixel_values_videos"], grid)
    torch.testing.assert_close(reverse["pixel_values_videos"], expected)
    assert not torch.equal(reverse["pixel_values_videos"], real["pixel_values_videos"])
    for key in real.keys() - {"pixel_values_videos"}:  # ids (with any timestamps in the prompt), grid, timing
        torch.testing.assert_close(reverse[key], real[key], msg=key)
    assert (_temporal_ids(model, real) is not None) == name.startswith("qwen")
    assert _temporal_ids(model, reverse) == _temporal_ids(model, real)


def test_the_sampling_rate_reaches_the_families_that_place_frames_in_time(family):
    name, model, processor = family
    fast, slow = _inputs(processor, _video(fps=8.0)), _inputs(processor, _video(fps=2.0))
    torch.testing.assert_close(fast["pixel_values_videos"], slow["pixel_values_videos"])
    changed = sorted(key for key in fast if not torch.equal(fast[key], slow[key]))
    if not FAMILIES[name].needs_sampled_fps:
        assert changed == []
    elif "second_per_grid_ts" in fast:  # Qwen2.5-VL: 2 frames per temporal patch, 4x the time between them
        assert changed == ["second_per_grid_ts"]
        assert float(slow["second_per_grid_ts"][0]) == pytest.approx(4 * float(fast["second_per_grid_ts"][0]))
        fast_ids, slow_ids = _temporal_ids(model, fast), _temporal_ids(model, slow)
        assert max(slow_ids) - min(slow_ids) == pytest.approx(4 * (max(fast_ids) - min(fast_ids)), abs=4)
    else:  # Qwen3-VL: each temporal patch's time, in seconds, is written into the prompt
        assert "input_ids" in changed
        assert processor.tokenizer.decode(fast["input_ids"][0]) != processor.tokenizer.decode(
            slow["input_ids"][0]
        )
