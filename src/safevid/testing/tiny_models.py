"""Tiny random-weight checkpoints of real video LMM architectures, built offline from config alone.

Each checkpoint is a complete Hub-style folder: `config.json`, `generation_config.json`,
`model.safetensors` and the family's real processor (image processor, video processor, a tokenizer of
the family's class trained locally, the family's chat template). It reloads with
`AutoModelForImageTextToText` / `AutoProcessor` (or `AutoModelForCausalLM` / `AutoTokenizer` for the
text family) under `HF_HUB_OFFLINE=1`, so tests exercise the same code paths as a 7B checkpoint.

Builds are deterministic (seeded) and cached under `safevid_home()/tiny-models/`, keyed by family,
seed, this kit's version and the transformers version. A build writes into a temporary folder that is
renamed into place only when complete, so concurrent builders never expose a half-written checkpoint.

Example:

```python
>>> from transformers import AutoModelForImageTextToText, AutoProcessor
>>> from safevid.testing.tiny_models import build_tiny_model
>>> path = build_tiny_model("qwen2_5_vl")
>>> model = AutoModelForImageTextToText.from_pretrained(path)
>>> processor = AutoProcessor.from_pretrained(path)
```
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safevid.paths import safevid_home

# Bump when a change here changes what is built, so stale cached checkpoints are not reused.
KIT_VERSION = "1"
MANIFEST_NAME = "safevid_tiny_model.json"

# Frames of the tiny processors: a 64x64 budget keeps an 8-frame clip at a few dozen video tokens.
_QWEN_PATCH = 14
_QWEN_MIN_PIXELS = 56 * 56
_QWEN_MAX_PIXELS = 112 * 112
_LLAVA_SIZE = 32
_LLAVA_PATCH = 8
_LLAVA_GRID_PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]

# The text backbone shared by every family: 2 layers, 64 wide, grouped-query attention.
_TEXT_DIMS: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}
# The vision tower of both LLaVA families (CLIP for LLaVA-NeXT-Video, SigLIP for OneVision): 2 layers,
# 32 wide, at the tiny processors' frame size.
_LLAVA_VISION_DIMS: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": _LLAVA_SIZE,
    "patch_size": _LLAVA_PATCH,
}
_MAX_NEW_TOKENS = 8


def _build_qwen_vl(version: str) -> tuple[Any, Any, dict[str, int | list[int]]]:
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from safevid.testing.tokenizer import QWEN2_VL_CHAT_TEMPLATE, QWEN_VISION_TOKENS, train_qwen2_tokenizer

    tokenizer = train_qwen2_tokenizer(
        extra_special_tokens=QWEN_VISION_TOKENS, chat_template=QWEN2_VL_CHAT_TEMPLATE
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
    pixels = {"min_pixels": _QWEN_MIN_PIXELS, "max_pixels": _QWEN_MAX_PIXELS, "patch_size": _QWEN_PATCH}
    image_processor = Qwen2VLImageProcessor(**pixels)
    video_processor = Qwen2VLVideoProcessor(**pixels, cap_pixels_per_frame=True)
    text_config = {
        **_TEXT_DIMS,
        "vocab_size": len(tokenizer),
        # mrope splits each head's rotary half-dimension (64 / 4 / 2 = 8) into time, height, width.
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    token_ids = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    vision = {
        "depth": 2,
        "num_heads": 2,
        "patch_size": _QWEN_PATCH,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }
    if version == "2":
        config = Qwen2VLConfig(
            text_config=text_config,
            vision_config={
                **vision,
                "embed_dim": 32,
                "mlp_ratio": 2,
                "hidden_size": _TEXT_DIMS["hidden_size"],
            },
            **token_ids,
        )
        model_class, processor_class = Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    else:
        config = Qwen2_5_VLConfig(
            text_config=text_config,
            vision_config={
                **vision,
                "hidden_size": 32,
                "intermediate_size": 64,
                "out_hidden_size": _TEXT_DIMS["hidden_size"],
                # One windowed and one full-attention block, as in the real 32-block tower.
                "window_size": 112,
                "fullatt_block_indexes": [1],
                "tokens_per_second": 2,
            },
            **token_ids,
        )
        model_class, processor_class = Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    processor = processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    eos = {"eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]], "pad_token_id": ids["<|endoftext|>"]}
    return model_class(config), processor, eos


def _build_qwen3_vl() -> tuple[Any, Any, dict[str, int | list[int]]]:
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    from safevid.testing.tokenizer import QWEN3_VL_CHAT_TEMPLATE, QWEN_VISION_TOKENS, train_qwen2_tokenizer

    tokenizer = train_qwen2_tokenizer(
        extra_special_tokens=QWEN_VISION_TOKENS, chat_template=QWEN3_VL_CHAT_TEMPLATE
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
    # Qwen3-VL patches are 16 pixels, so its budget is counted in 32-pixel merged units.
    pixels = {"size": {"shortest_edge": 64 * 64, "longest_edge": 128 * 128}, "patch_size": 16}
    config = Qwen3VLConfig(
        text_config={
            **_TEXT_DIMS,
            "head_dim": 16,
            "vocab_size": len(tokenizer),
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": _TEXT_DIMS["hidden_size"],
            "patch_size": 16,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(**pixels, cap_pixels_per_frame=True),
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )
    eos = {"eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]], "pad_token_id": ids["<|endoftext|>"]}
    return Qwen3VLForConditionalGeneration(config), processor, eos


def _build_llava_next_video() -> tuple[Any, Any, dict[str, int | list[int]]]:
    from transformers import (
        LlavaNextImageProcessor,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
    )

    from safevid.testing.tokenizer import LLAVA_NEXT_VIDEO_CHAT_TEMPLATE, train_llama_tokenizer

    tokenizer = train_llama_tokenizer(
        extra_special_tokens=("<image>", "<video>"), chat_template=LLAVA_NEXT_VIDEO_CHAT_TEMPLATE
    )
    crop = {"height": _LLAVA_SIZE, "width": _LLAVA_SIZE}
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": _LLAVA_SIZE}, crop_size=crop, image_grid_pinpoints=_LLAVA_GRID_PINPOINTS
    )
    video_processor = LlavaNextVideoVideoProcessor(size={"shortest_edge": _LLAVA_SIZE}, crop_size=crop)
    patches = (_LLAVA_SIZE // _LLAVA_PATCH) ** 2
    config = LlavaNextVideoConfig(
        text_config={
            "model_type": "llama",
            **_TEXT_DIMS,
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={"model_type": "clip_vision_model", **_LLAVA_VISION_DIMS, "projection_dim": 32},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=_LLAVA_GRID_PINPOINTS,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=patches,
        video_seq_length=patches // 4,
    )
    processor = LlavaNextVideoProcessor(
        video_processor=video_processor,
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=LLAVA_NEXT_VIDEO_CHAT_TEMPLATE,
        patch_size=_LLAVA_PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
    )
    eos = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    return LlavaNextVideoForConditionalGeneration(config), processor, eos


def _build_llava_onevision() -> tuple[Any, Any, dict[str, int | list[int]]]:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    from safevid.testing.tokenizer import LLAVA_ONEVISION_CHAT_TEMPLATE, train_qwen2_tokenizer

    tokenizer = train_qwen2_tokenizer(
        extra_special_tokens=("<image>", "<video>"), chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE
    )
    size = {"height": _LLAVA_SIZE, "width": _LLAVA_SIZE}
    image_processor = LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=_LLAVA_GRID_PINPOINTS)
    video_processor = LlavaOnevisionVideoProcessor(size=size)
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = LlavaOnevisionConfig(
        text_config={
            "model_type": "qwen2",
            **_TEXT_DIMS,
            "vocab_size": len(tokenizer),
            "bos_token_id": endoftext,
            "eos_token_id": im_end,
            "pad_token_id": endoftext,
        },
        vision_config={"model_type": "siglip_vision_model", **_LLAVA_VISION_DIMS, "vision_use_head": False},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=_LLAVA_GRID_PINPOINTS,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        num_image_tokens=(_LLAVA_SIZE // _LLAVA_PATCH) ** 2,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE,
    )
    eos = {"eos_token_id": [im_end, endoftext], "pad_token_id": endoftext}
    return LlavaOnevisionForConditionalGeneration(config), processor, eos


def _build_text() -> tuple[Any, Any, dict[str, int | list[int]]]:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from safevid.testing.tokenizer import QWEN2_CHAT_TEMPLATE, train_qwen2_tokenizer

    tokenizer = train_qwen2_tokenizer(chat_template=QWEN2_CHAT_TEMPLATE)
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(
        **_TEXT_DIMS,
        vocab_size=len(tokenizer),
        bos_token_id=endoftext,
        eos_token_id=im_end,
        pad_token_id=endoftext,
        tie_word_embeddings=True,
    )
    eos = {"eos_token_id": [im_end, endoftext], "pad_token_id": endoftext}
    return Qwen2ForCausalLM(config), tokenizer, eos


_BUILDERS: dict[str, Callable[[], tuple[Any, Any, dict[str, int | list[int]]]]] = {
    "qwen2_5_vl": lambda: _build_qwen_vl("2.5"),
    "qwen2_vl": lambda: _build_qwen_vl("2"),
    "qwen3_vl": _build_qwen3_vl,
    "llava_next_video": _build_llava_next_video,
    "llava_onevision": _build_llava_onevision,
    "text": _build_text,
}

FAMILIES: tuple[str, ...] = tuple(_BUILDERS)
"""Families `build_tiny_model` can build; every one but `"text"` is a video LMM."""

VIDEO_FAMILIES: tuple[str, ...] = tuple(family for family in FAMILIES if family != "text")


def tiny_model_cache_dir(family: str, seed: int = 0) -> Path:
    """Where `build_tiny_model(family, seed=seed)` caches its checkpoint."""
    import transformers

    _check_family(family)
    return (
        safevid_home()
        / "tiny-models"
        / f"{family}-seed{seed}-kit{KIT_VERSION}-transformers{transformers.__version__}"
    )


def build_tiny_model(
    family: str, output_dir: str | os.PathLike[str] | None = None, *, seed: int = 0, overwrite: bool = False
) -> Path:
    """Build (or reuse) a tiny random-weight checkpoint of a real architecture and return its folder.

    Args:
        family (`str`):
            One of `FAMILIES`: `"qwen2_5_vl"`, `"qwen2_vl"`, `"qwen3_vl"`, `"llava_next_video"`, `"llava_onevision"`
            (video LMMs, with their processors) or `"text"` (a Qwen2 causal LM with its tokenizer).
        output_dir (`str` or `os.PathLike`, *optional*):
            Where to write the checkpoint. Defaults to the shared cache, `tiny_model_cache_dir(family, seed)`.
        seed (`int`, *optional*, defaults to 0):
            Seed of the weight initialisation; the same seed always gives the same weights.
        overwrite (`bool`, *optional*, defaults to `False`):
            Rebuild even if a complete checkpoint of the same family, seed and kit version is there.

    Returns:
        `Path`: the checkpoint folder.

    Raises:
        `ValueError`: the family is not one of `FAMILIES`.
        `FileExistsError`: `output_dir` holds something other than this checkpoint and `overwrite` is off.
    """
    _check_family(family)
    target = Path(output_dir) if output_dir is not None else tiny_model_cache_dir(family, seed)
    if not overwrite and target.exists():
        if _manifest_matches(target, family, seed):
            return target
        if any(target.iterdir()):
            raise FileExistsError(
                f"{target} exists and is not a tiny {family!r} checkpoint with seed {seed} "
                f"(kit {KIT_VERSION}); pass overwrite=True to replace it."
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        _write_checkpoint(family, seed, staging)
        _move_into_place(staging, target, family, seed, replace=overwrite or target.exists())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_checkpoint(family: str, seed: int, folder: Path) -> None:
    import torch
    import transformers
    from transformers import GenerationConfig

    # Seed a private RNG stream: building a model must not perturb the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor, eos = _BUILDERS[family]()
    model.generation_config = GenerationConfig(
        **eos,
        bos_token_id=model.config.get_text_config().bos_token_id,
        max_new_tokens=_MAX_NEW_TOKENS,
        do_sample=False,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    manifest = {
        "family": family,
        "seed": seed,
        "kit_version": KIT_VERSION,
        "transformers_version": transformers.__version__,
        "model_type": model.config.model_type,
        "architecture": type(model).__name__,
        "num_parameters": sum(parameter.numel() for parameter in model.parameters()),
    }
    # Written last: a folder with a manifest is a complete checkpoint.
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def _move_into_place(staging: Path, target: Path, family: str, seed: int, *, replace: bool) -> None:
    """Rename the finished build onto `target`; a rename is atomic, so readers see all or nothing."""
    if replace and target.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.retired-", dir=target.parent))
        os.replace(target, retired / target.name)
        shutil.rmtree(retired, ignore_errors=True)
    elif target.exists():
        # An empty folder the caller made for us.
        target.rmdir()
    try:
        os.rename(staging, target)
    except OSError:
        # Another builder won the race; its checkpoint is the same (same seed, same kit), keep it.
        if not _manifest_matches(target, family, seed):
            raise


def load_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The build manifest of a tiny checkpoint (family, seed, versions, parameter count)."""
    manifest = Path(path) / MANIFEST_NAME
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{path} is not a tiny checkpoint built by safevid: it has no {MANIFEST_NAME}."
        )
    return json.loads(manifest.read_text())


def _manifest_matches(folder: Path, family: str, seed: int) -> bool:
    import transformers

    try:
        manifest = load_manifest(folder)
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return manifest == {
        **manifest,
        "family": family,
        "seed": seed,
        "kit_version": KIT_VERSION,
        "transformers_version": transformers.__version__,
    }


def _check_family(family: str) -> None:
    if family not in _BUILDERS:
        raise ValueError(f"No tiny model for family {family!r}; supported families: {', '.join(FAMILIES)}.")
