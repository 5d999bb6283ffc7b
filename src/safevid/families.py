"""What each supported video LMM family needs to see a video: the one place that knows it.

Generation backends and the DPO collator hand pre-sampled frames to a transformers processor. How to
do that right differs per family: Qwen2.5-VL derives its temporal position ids from the fps at which
the frames were sampled (lose it and the processor silently assumes 24 fps, so every frame of a
short clip gets the same temporal position), Qwen3-VL writes frame timestamps into the prompt,
LLaVA-style models only count frames. This module keeps
that knowledge, and where each family's vision encoder lives, so the rest of safevid never branches
on model types.

Example:

```python
>>> from safevid.families import get_family, video_processor_inputs
>>> family = get_family(model)  # or a config, a processor, a model type, a checkpoint folder
>>> inputs = processor(text=[prompt], **video_processor_inputs(processor, [sampled]), return_tensors="pt")
>>> vision_tower = family.get_vision_tower(model)
```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class VideoFamily:
    """How one family of video LMMs takes video input.

    Args:
        name (`str`):
            The family's name, as in `safevid.testing.tiny_models.FAMILIES`.
        model_types (`tuple[str, ...]`):
            The `config.model_type` values of the family.
        processor_classes (`tuple[str, ...]`):
            Class names of the family's transformers processors.
        vision_tower (`str`):
            Dotted attribute path, from the `...ForConditionalGeneration` model, to the vision encoder
            (what to freeze, or what must receive gradients when it is trained).
        projector (`str`):
            Dotted attribute path to the vision-to-language projector.
        video_token (`str`):
            The placeholder token that the processor expands into one token per video feature.
        video_token_id_attribute (`str`):
            Name of the config attribute that holds the placeholder's id.
        video_input_names (`tuple[str, ...]`):
            The processor outputs that carry the video to `model.forward` (a collator must keep them).
        needs_sampled_fps (`bool`):
            Whether the model's position ids depend on the fps of the sampled frames, so the processor
            must get each video's metadata.
    """

    name: str
    model_types: tuple[str, ...]
    processor_classes: tuple[str, ...]
    vision_tower: str
    projector: str
    video_token: str
    video_token_id_attribute: str
    video_input_names: tuple[str, ...]
    needs_sampled_fps: bool

    def get_vision_tower(self, model: Any) -> Any:
        """The vision encoder module of `model` (unwrapping a PEFT model if given one)."""
        return _resolve(_unwrap(model), self.vision_tower)

    def get_projector(self, model: Any) -> Any:
        """The vision-to-language projector module of `model`."""
        return _resolve(_unwrap(model), self.projector)

    def video_token_id(self, config: Any) -> int:
        """The id of the video placeholder token, read from a model config."""
        return int(getattr(config, self.video_token_id_attribute))


FAMILIES: dict[str, VideoFamily] = {
    family.name: family
    for family in (
        VideoFamily(
            name="qwen2_5_vl",
            model_types=("qwen2_5_vl",),
            processor_classes=("Qwen2_5_VLProcessor",),
            vision_tower="model.visual",
            projector="model.visual.merger",
            video_token="<|video_pad|>",
            video_token_id_attribute="video_token_id",
            video_input_names=("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"),
            needs_sampled_fps=True,
        ),
        VideoFamily(
            name="qwen2_vl",
            model_types=("qwen2_vl",),
            processor_classes=("Qwen2VLProcessor",),
            vision_tower="model.visual",
            projector="model.visual.merger",
            video_token="<|video_pad|>",
            video_token_id_attribute="video_token_id",
            video_input_names=("pixel_values_videos", "video_grid_thw"),
            # Qwen2-VL spaces temporal positions by grid index, whatever the fps.
            needs_sampled_fps=False,
        ),
        VideoFamily(
            name="qwen3_vl",
            model_types=("qwen3_vl",),
            processor_classes=("Qwen3VLProcessor",),
            vision_tower="model.visual",
            projector="model.visual.merger",
            video_token="<|video_pad|>",
            video_token_id_attribute="video_token_id",
            video_input_names=("pixel_values_videos", "video_grid_thw"),
            # Qwen3-VL writes each temporal patch's timestamp (`<1.5 seconds>`) into the prompt.
            needs_sampled_fps=True,
        ),
        VideoFamily(
            name="llava_next_video",
            model_types=("llava_next_video",),
            processor_classes=("LlavaNextVideoProcessor",),
            vision_tower="model.vision_tower",
            projector="model.multi_modal_projector",
            video_token="<video>",
            video_token_id_attribute="video_token_index",
            video_input_names=("pixel_values_videos",),
            needs_sampled_fps=False,
        ),
        VideoFamily(
            name="llava_onevision",
            model_types=("llava_onevision",),
            processor_classes=("LlavaOnevisionProcessor",),
            vision_tower="model.vision_tower",
            projector="model.multi_modal_projector",
            video_token="<video>",
            video_token_id_attribute="video_token_index",
            video_input_names=("pixel_values_videos",),
            needs_sampled_fps=False,
        ),
    )
}


class FramesLike(Protocol):
    """What `video_processor_inputs` needs of a sampled video (`safevid.video.SampledVideo` is one)."""

    @property
    def frames(self) -> Any: ...  # torch.uint8 tensor of shape (T, C, H, W)


def get_family(obj: Any) -> VideoFamily:
    """The `VideoFamily` of a model, config, processor, model type, family name or checkpoint folder.

    Args:
        obj:
            A transformers (or PEFT-wrapped) model, a `PreTrainedConfig`, a processor, a
            `model_type` / family name such as `"qwen2_5_vl"`, or the path of a local checkpoint.

    Raises:
        `ValueError`: the family is not supported; the message names the model type and lists the
        supported ones.
    """
    if isinstance(obj, (str, os.PathLike)) and Path(obj).is_dir():
        from transformers import AutoConfig

        obj = AutoConfig.from_pretrained(obj)
    if isinstance(obj, str):
        return _by_model_type(obj, what=f"model type {obj!r}")
    if hasattr(obj, "tokenizer") and not hasattr(obj, "model_type") and not hasattr(obj, "config"):
        # A processor: it carries no config, its class says the family.
        name = type(obj).__name__
        for family in FAMILIES.values():
            if name in family.processor_classes:
                return family
        raise ValueError(
            f"Unsupported video processor {name}; supported processors: "
            f"{', '.join(cls for family in FAMILIES.values() for cls in family.processor_classes)}."
        )
    config = getattr(_unwrap(obj), "config", obj)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise ValueError(
            f"Cannot tell the video LMM family of a {type(obj).__name__}: pass a model, a config, a processor "
            "or a model type."
        )
    return _by_model_type(model_type, what=f"model type {model_type!r} ({type(obj).__name__})")


def video_processor_inputs(processor: Any, videos: Sequence[FramesLike]) -> dict[str, Any]:
    """Keyword arguments for `processor(text=..., **kwargs)` that pass pre-sampled videos faithfully.

    The frames are handed over as they are (`do_sample_frames=False`: they were already sampled), each
    with its metadata, so that families whose position ids depend on time (Qwen2.5-VL's
    `second_per_grid_ts`) use the fps at which the frames were actually sampled.

    Args:
        processor:
            The model's transformers processor.
        videos (`Sequence`):
            Sampled videos, one per video placeholder in the text, in order: objects with `frames` (a
            `torch.uint8` tensor of shape (T, C, H, W)) and `transformers_metadata()` (a
            `transformers.video_utils.VideoMetadata` of the source video and the sampled indices) or
            `sampled_fps`. `safevid.video.SampledVideo` is such an object.

    Returns:
        `dict`: `videos`, `video_metadata` and `do_sample_frames` for the processor call.

    Raises:
        `ValueError`: a video has no frames, malformed frames, or metadata that does not match them.
    """
    family = get_family(processor)
    frames, metadata = [], []
    for index, video in enumerate(videos):
        clip = _check_frames(getattr(video, "frames", None), index)
        frames.append(clip)
        metadata.append(_metadata(video, len(clip), index, required=family.needs_sampled_fps))
    return {"videos": frames, "video_metadata": metadata, "do_sample_frames": False}


def _check_frames(frames: Any, index: int) -> Any:
    import torch

    if not isinstance(frames, torch.Tensor):
        raise ValueError(
            f"Video {index}: expected `frames` as a torch.uint8 tensor (T, C, H, W), got {type(frames).__name__}."
        )
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(
            f"Video {index}: expected `frames` as a torch.uint8 tensor of shape (T, C, H, W) with C in (1, 3), "
            f"got {frames.dtype} of shape {tuple(frames.shape)}."
        )
    if len(frames) == 0:
        raise ValueError(f"Video {index}: no frames were sampled.")
    return frames


def _metadata(video: Any, num_frames: int, index: int, *, required: bool) -> Any:
    from transformers.video_utils import VideoMetadata

    if callable(getattr(video, "transformers_metadata", None)):
        metadata = video.transformers_metadata()
        indices = metadata.frames_indices
        if indices is not None and len(indices) != num_frames:
            raise ValueError(
                f"Video {index}: its metadata lists {len(indices)} sampled frames but it has {num_frames}; "
                "the sampled fps would be wrong."
            )
        if required and (metadata.fps is None or indices is None or not metadata.total_num_frames):
            raise ValueError(
                f"Video {index}: the model needs the sampled fps, but the metadata lacks fps, frame indices "
                "or the source frame count."
            )
        return metadata
    sampled_fps = getattr(video, "sampled_fps", None)
    if sampled_fps is None:
        if required:
            raise ValueError(
                f"Video {index}: the model needs the fps at which the frames were sampled; give the video a "
                "`transformers_metadata()` method or a `sampled_fps` attribute."
            )
        return VideoMetadata(total_num_frames=num_frames, frames_indices=list(range(num_frames)))
    # Frames taken at `sampled_fps` are, to the model, a video of that fps sampled at every frame.
    return VideoMetadata(
        total_num_frames=num_frames,
        fps=float(sampled_fps),
        duration=num_frames / float(sampled_fps),
        frames_indices=list(range(num_frames)),
    )


def _by_model_type(model_type: str, *, what: str) -> VideoFamily:
    for family in FAMILIES.values():
        if model_type == family.name or model_type in family.model_types:
            return family
    supported = sorted({model_type for family in FAMILIES.values() for model_type in family.model_types})
    raise ValueError(f"Unsupported video LMM family: {what}; supported model types: {', '.join(supported)}.")


def _unwrap(model: Any) -> Any:
    # A PEFT model wraps the transformers model as `base_model.model`.
    if hasattr(model, "get_base_model"):
        return model.get_base_model()
    return model


def _resolve(root: Any, path: str) -> Any:
    module = root
    for attribute in path.split("."):
        if not hasattr(module, attribute):
            raise ValueError(f"{type(root).__name__} has no `{path}` (missing `{attribute}`).")
        module = getattr(module, attribute)
    return module
