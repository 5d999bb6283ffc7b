"""Real-size video LMMs without a download: the published configurations of the 7B checkpoints, as data.

Each YAML file here holds one Hub checkpoint's `config.json` (its source named in the file's comments) and the
pixel budget of its video processor. `build_shaped_model` turns one into a random-weight model of the real size:
on the `meta` device it allocates nothing (parameter counts, memory arithmetic, tests), on a GPU it is a 7B model
to time training steps on. Weights are random, so nothing it generates means anything; shapes and FLOPs are
those of the real checkpoint.

The kit has no real tokenizer (that would be a download), so `build_shaped_processor` pairs the family's kit
tokenizer with the real image and video processors, and `build_shaped_model(..., token_ids_like=...)` moves the
special-token ids of the config to that tokenizer's. The vocabulary size stays the real one, so the embedding and
the LM head keep their real shapes.

```python
>>> from safevid.testing.model_shapes import build_shaped_model, count_parameters
>>> model = build_shaped_model("qwen2_5_vl_7b_instruct")  # on the meta device: no memory
>>> round(count_parameters(model)["total"] / 1e9, 2)
8.29
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HERE = Path(__file__).parent

SHAPES: tuple[str, ...] = tuple(sorted(path.stem for path in _HERE.glob("*.yaml")))
"""Names of the shapes in this folder (the YAML file stems), e.g. `"qwen2_5_vl_7b_instruct"`."""

# Special-token fields of each family's config that name tokenizer ids.
_TOKEN_ID_FIELDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
_TEXT_TOKEN_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


@dataclass(frozen=True)
class ModelShape:
    """One checkpoint's published configuration and the pixel budget of its video processor."""

    name: str
    repo: str
    family: str
    config: dict[str, Any]
    video_processor: dict[str, Any]

    def pretrained_config(self) -> Any:
        """The transformers config of the checkpoint (exactly as `AutoConfig.from_pretrained(repo)` reads it)."""
        from transformers import AutoConfig

        config = AutoConfig.for_model(**self.config)
        config._name_or_path = self.repo
        return config


def load_shape(name: str) -> ModelShape:
    """The shape `name` (one of `SHAPES`).

    Raises:
        `ValueError`: no such shape; the message lists the known ones.
    """
    import yaml

    if name not in SHAPES:
        raise ValueError(f"No model shape {name!r} in {_HERE}; known shapes: {', '.join(SHAPES)}.")
    data = yaml.safe_load((_HERE / f"{name}.yaml").read_text())
    return ModelShape(name=name, **data)


def build_shaped_model(
    name: str,
    *,
    device: str | Any = "meta",
    dtype: Any = None,
    attn_implementation: str = "sdpa",
    token_ids_like: str | os.PathLike[str] | None = None,
    layers: int | None = None,
) -> Any:
    """A random-weight model with the exact architecture and size of the checkpoint `name`.

    Args:
        name (`str`): one of `SHAPES`.
        device (`str` or `torch.device`, defaults to `"meta"`): where the weights are created; `"meta"` allocates
            nothing, `"cuda"` initialises them on the GPU directly (no CPU copy of a 7B model).
        dtype (`torch.dtype`, *optional*): defaults to `torch.bfloat16`, the checkpoints' dtype.
        attn_implementation (`str`, defaults to `"sdpa"`).
        token_ids_like (`str` or `os.PathLike`, *optional*): a kit checkpoint of the same family
            (`safevid.testing.tiny_models.build_tiny_model(family)`) whose special-token ids replace the real ones,
            so the model reads the kit tokenizer's video placeholders. Without it the ids are the real ones.
        layers (`int`, *optional*): keep only this many decoder layers and vision blocks (at least the two that
            LLaVA's feature layer -2 needs), at the real widths: the real code path, small enough for a CPU.

    Returns:
        The model (`...ForConditionalGeneration`), in eval mode as `from_pretrained` returns it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    shape = load_shape(name)
    config = shape.pretrained_config()
    if token_ids_like is not None:
        _take_token_ids(config, AutoConfig.from_pretrained(token_ids_like), shape)
    if layers is not None:
        _keep_layers(config, layers)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(
            config, dtype=dtype or torch.bfloat16, attn_implementation=attn_implementation
        )
    return model.eval()


def build_shaped_processor(name: str) -> Any:
    """The kit tokenizer of the shape's family with the checkpoint's real image and video processors.

    Video tokens per frame are then the real ones: the processors resize frames with the checkpoint's pixel
    budget and patch size. Token ids are the kit tokenizer's: build the model with `token_ids_like` (the
    family's tiny checkpoint) to match.
    """
    from transformers import AutoProcessor

    from safevid.testing.tiny_models import build_tiny_model

    shape = load_shape(name)
    tiny = AutoProcessor.from_pretrained(build_tiny_model(shape.family))
    settings = shape.video_processor
    if shape.family in ("qwen2_5_vl", "qwen2_vl"):
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        pixels = {"patch_size": settings["patch_size"], "merge_size": settings["merge_size"]}
        return type(tiny)(
            image_processor=Qwen2VLImageProcessor(**pixels),
            video_processor=Qwen2VLVideoProcessor(
                **pixels,
                min_pixels=settings["min_pixels"],
                max_pixels=settings["max_pixels"],
                temporal_patch_size=settings["temporal_patch_size"],
                cap_pixels_per_frame=True,
            ),
            tokenizer=tiny.tokenizer,
            chat_template=tiny.chat_template,
        )
    if shape.family == "llava_next_video":
        from transformers import LlavaNextImageProcessor, LlavaNextVideoVideoProcessor

        crop = {"height": settings["crop_size"], "width": settings["crop_size"]}
        size = {"shortest_edge": settings["shortest_edge"]}
        return type(tiny)(
            image_processor=LlavaNextImageProcessor(
                size=size, crop_size=crop, image_grid_pinpoints=shape.config["image_grid_pinpoints"]
            ),
            video_processor=LlavaNextVideoVideoProcessor(size=size, crop_size=crop),
            tokenizer=tiny.tokenizer,
            chat_template=tiny.chat_template,
            patch_size=settings["patch_size"],
            vision_feature_select_strategy=shape.config["vision_feature_select_strategy"],
            num_additional_image_tokens=1,  # CLIP's CLS token
        )
    raise ValueError(f"Shape {name!r}: no processor recipe for family {shape.family!r}.")


def count_parameters(model: Any) -> dict[str, int]:
    """Parameters of a video LMM by part: `total`, `vision` (tower and projector), `embedding` (input embedding and
    an untied LM head) and `language` (the decoder layers and norms: what every text token goes through)."""
    from safevid.families import get_family

    family = get_family(model.config)
    vision = {
        id(p)
        for module in (family.get_vision_tower(model), family.get_projector(model))
        for p in module.parameters()
    }
    embeddings = {id(p) for p in model.get_input_embeddings().parameters()}
    embeddings |= {id(p) for p in model.get_output_embeddings().parameters()}
    counts = {"total": 0, "vision": 0, "embedding": 0, "language": 0}
    for parameter in model.parameters():  # tied weights appear once
        counts["total"] += parameter.numel()
        part = (
            "vision"
            if id(parameter) in vision
            else "embedding"
            if id(parameter) in embeddings
            else "language"
        )
        counts[part] += parameter.numel()
    return counts


def _take_token_ids(config: Any, donor: Any, shape: ModelShape) -> None:
    if donor.model_type != config.model_type:
        raise ValueError(
            f"token_ids_like is a {donor.model_type!r} checkpoint but shape {shape.name!r} is {config.model_type!r}: "
            f"pass the tiny checkpoint of family {shape.family!r}."
        )
    for field in _TOKEN_ID_FIELDS:
        if hasattr(donor, field):
            setattr(config, field, getattr(donor, field))
    text, donor_text = config.get_text_config(), donor.get_text_config()
    for field in _TEXT_TOKEN_ID_FIELDS:
        setattr(text, field, getattr(donor_text, field))


def _keep_layers(config: Any, layers: int) -> None:
    config.get_text_config().num_hidden_layers = layers
    vision = config.vision_config
    if hasattr(
        vision, "fullatt_block_indexes"
    ):  # Qwen2.5-VL: the last kept block attends over the whole frame
        vision.depth = layers
        vision.fullatt_block_indexes = [layers - 1]
    else:
        vision.num_hidden_layers = max(layers, 2)
