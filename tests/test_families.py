from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import pytest
import torch

from safevid.families import FAMILIES, get_family, video_processor_inputs
from safevid.testing.tiny_models import VIDEO_FAMILIES, build_tiny_model


@dataclass
class Clip:
    """Frames sampled from a source video, with the metadata `safevid.video.SampledVideo` carries."""

    frames: torch.Tensor
    source_fps: float
    total_frames: int
    indices: list[int]

    @property
    def sampled_fps(self) -> float:
        return len(self.indices) / self.total_frames * self.source_fps

    def transformers_metadata(self):
        from transformers.video_utils import VideoMetadata

        return VideoMetadata(
            total_num_frames=self.total_frames,
            fps=self.source_fps,
            duration=self.total_frames / self.source_fps,
            frames_indices=self.indices,
        )


@dataclass
class FpsOnly:
    frames: torch.Tensor
    sampled_fps: float


def _frames(num_frames: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (num_frames, 3, 56, 56), dtype=torch.uint8, generator=generator)


def _uniform(num_frames: int, total_frames: int) -> list[int]:
    return [i * total_frames // num_frames for i in range(num_frames)]


@pytest.fixture(scope="module")
def loaded():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    def load(family: str):
        path = build_tiny_model(family)
        return AutoModelForImageTextToText.from_pretrained(path), AutoProcessor.from_pretrained(path)

    return {family: load(family) for family in VIDEO_FAMILIES}


def _prompt(processor) -> str:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_family_is_found_from_model_config_processor_type_and_folder(loaded, family):
    model, processor = loaded[family]
    expected = FAMILIES[family]
    assert get_family(model) is expected
    assert get_family(model.config) is expected
    assert get_family(processor) is expected
    assert get_family(model.config.model_type) is expected
    assert get_family(build_tiny_model(family)) is expected

    tower = expected.get_vision_tower(model)
    assert isinstance(tower, torch.nn.Module)
    assert sum(p.numel() for p in tower.parameters()) > 0
    assert isinstance(expected.get_projector(model), torch.nn.Module)
    assert expected.video_token_id(model.config) == processor.tokenizer.convert_tokens_to_ids(
        expected.video_token
    )


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_processor_outputs_carry_every_video_input_the_family_declares(loaded, family):
    _, processor = loaded[family]
    clip = Clip(_frames(), source_fps=30.0, total_frames=60, indices=_uniform(8, 60))
    inputs = processor(
        text=[_prompt(processor)], **video_processor_inputs(processor, [clip]), return_tensors="pt"
    )
    for name in FAMILIES[family].video_input_names:
        assert name in inputs, name


def test_qwen2_5_vl_temporal_positions_follow_the_sampled_fps(loaded):
    model, processor = loaded["qwen2_5_vl"]
    frames = _frames()
    # The same 8 frames, sampled from 2 s of video (4 fps) and from 10 s of video (0.8 fps).
    fast = Clip(frames, source_fps=30.0, total_frames=60, indices=_uniform(8, 60))
    slow = Clip(frames, source_fps=30.0, total_frames=300, indices=_uniform(8, 300))
    prompt = _prompt(processor)
    temporal_patch = processor.video_processor.temporal_patch_size

    def encode(clip):
        return processor(text=[prompt], **video_processor_inputs(processor, [clip]), return_tensors="pt")

    fast_inputs, slow_inputs = encode(fast), encode(slow)
    assert fast_inputs["second_per_grid_ts"].tolist() == pytest.approx([temporal_patch / 4.0])
    assert slow_inputs["second_per_grid_ts"].tolist() == pytest.approx([temporal_patch / 0.8])

    def temporal_ids(inputs) -> list[int]:
        position_ids, _ = model.model.get_rope_index(
            inputs["input_ids"],
            inputs["mm_token_type_ids"],
            video_grid_thw=inputs["video_grid_thw"],
            second_per_grid_ts=inputs["second_per_grid_ts"],
            attention_mask=inputs["attention_mask"],
        )
        is_video = inputs["input_ids"][0] == model.config.video_token_id
        return sorted(set(position_ids[0, 0, is_video].tolist()))

    tokens_per_second = model.config.vision_config.tokens_per_second
    grid_t = int(fast_inputs["video_grid_thw"][0, 0])
    for inputs, fps in ((fast_inputs, 4.0), (slow_inputs, 0.8)):
        ids = temporal_ids(inputs)
        step = int(tokens_per_second * temporal_patch / fps)
        assert [b - a for a, b in itertools.pairwise(ids)] == [step] * (grid_t - 1)
    assert temporal_ids(fast_inputs) != temporal_ids(slow_inputs)

    # Without the metadata the processor assumes 24 fps and the 8 frames collapse onto one position:
    # the pitfall `video_processor_inputs` exists to avoid.
    naive = processor(text=[prompt], videos=[frames], return_tensors="pt")
    assert naive["second_per_grid_ts"].tolist() == pytest.approx([temporal_patch / 24])
    assert len(temporal_ids(naive)) == 1

    # A video that only knows its sampled fps gets the same timing as full metadata.
    fps_only = processor(
        text=[prompt], **video_processor_inputs(processor, [FpsOnly(frames, 0.8)]), return_tensors="pt"
    )
    assert fps_only["second_per_grid_ts"].tolist() == pytest.approx(
        slow_inputs["second_per_grid_ts"].tolist()
    )


def test_inputs_pass_frames_unsampled(loaded):
    _, processor = loaded["qwen2_vl"]
    kwargs = video_processor_inputs(processor, [FpsOnly(_frames(6), 2.0), FpsOnly(_frames(4), 1.0)])
    assert kwargs["do_sample_frames"] is False
    assert [len(video) for video in kwargs["videos"]] == [6, 4]
    messages = [
        {
            "role": "user",
            "content": [{"type": "video"}, {"type": "video"}, {"type": "text", "text": "Compare."}],
        }
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], **kwargs, return_tensors="pt")
    # Every frame reaches the model: grid_t is frames / temporal patch size, nothing resampled.
    assert inputs["video_grid_thw"][:, 0].tolist() == [3, 2]


def test_qwen2_5_vl_requires_the_sampled_fps(loaded):
    _, processor = loaded["qwen2_5_vl"]

    @dataclass
    class FramesOnly:
        frames: torch.Tensor

    with pytest.raises(ValueError, match=r"Video 0: .*sampled"):
        video_processor_inputs(processor, [FramesOnly(_frames())])
    # LLaVA-NeXT-Video counts frames only, so frames alone are enough there.
    assert video_processor_inputs(loaded["llava_next_video"][1], [FramesOnly(_frames())])["videos"]


def test_bad_frames_and_mismatched_metadata_are_named(loaded):
    _, processor = loaded["qwen2_5_vl"]
    with pytest.raises(ValueError, match=r"Video 1: .*torch.uint8"):
        video_processor_inputs(processor, [FpsOnly(_frames(), 1.0), FpsOnly(_frames().float(), 1.0)])
    with pytest.raises(ValueError, match=r"Video 0: .*no frames"):
        video_processor_inputs(processor, [FpsOnly(_frames()[:0], 1.0)])
    wrong = Clip(_frames(), source_fps=30.0, total_frames=60, indices=_uniform(4, 60))
    with pytest.raises(ValueError, match=r"Video 0: its metadata lists 4 sampled frames but it has 8"):
        video_processor_inputs(processor, [wrong])


def test_unsupported_family_names_the_model_type_and_lists_supported():
    from transformers import Qwen2Config

    with pytest.raises(ValueError, match=r"'qwen2'.*Qwen2Config.*llava_next_video.*qwen2_5_vl"):
        get_family(Qwen2Config())
    with pytest.raises(ValueError, match=r"'idefics'"):
        get_family("idefics")
    with pytest.raises(ValueError, match="Cannot tell"):
        get_family(object())


def test_qwen3_vl_prompt_timestamps_follow_the_sampled_fps(loaded):
    _, processor = loaded["qwen3_vl"]
    frames = _frames()
    prompt = _prompt(processor)

    def timestamps(clip) -> list[float]:
        inputs = processor(text=[prompt], **video_processor_inputs(processor, [clip]))
        text = processor.tokenizer.decode(inputs["input_ids"][0])
        return [float(seconds) for seconds in re.findall(r"<([\d.]+) seconds>", text)]

    two_seconds = timestamps(Clip(frames, source_fps=30.0, total_frames=60, indices=_uniform(8, 60)))
    ten_seconds = timestamps(Clip(frames, source_fps=30.0, total_frames=300, indices=_uniform(8, 300)))
    assert len(two_seconds) == len(ten_seconds) == 4  # one per temporal patch of 2 frames
    assert two_seconds[-1] < 2.0 < 8.0 < ten_seconds[-1]
