"""Video DPO at the real 7B shapes on one GPU: step time, video tokens/s, MFU, peak memory, largest frame count.

For Qwen2.5-VL-7B-Instruct and LLaVA-NeXT-Video-7B (random weights of the exact published shapes,
`safevid.testing.model_shapes`), each of {LoRA, full where it fits} x frames {8, 16, 32, 64} x {live reference,
precomputed reference}: one `VideoDPOTrainer` run (bf16, SDPA, gradient checkpointing, batch 1 = one preference
pair, the recipes' LoRA r=64 on all linear layers) over generated 640x360 clips decoded at the recipes' pixel
budget, through the project's own data preparation and collator. Side by side in the same run: TRL's own
`DPOTrainer` on the same model with the frames passed as images, as many as give the same number of vision tokens.
Then the largest frame count that fits at batch 1, found by doubling until the GPU runs out of memory.

MFU counts model FLOPs (recomputation by gradient checkpointing not counted), per optimizer step:

    forward F = 2 * N_lang * T + 2 * d * V * T_completion + 2 * N_vision * P + A_lang + A_vision
    step      = 3F (full) or 2F + A (LoRA: no weight gradients of frozen weights) + F (live reference only)

with N_lang the decoder parameters (no embeddings), T the tokens of the pair's two sequences, d the hidden size,
V the vocabulary (the LM head runs on completion tokens only: TRL's fused head), N_vision the vision tower and
projector, P the positions the tower sees (the video twice: the collator repeats it for both halves),
A_lang = 2 * L * d * T_seq^2 summed over sequences (causal attention) and A_vision the tower's attention
(4 * n^2 * d_vision per window of n positions, per layer). MFU = step FLOPs / step time / the card's dense bf16
peak (989 TFLOP/s on H100 SXM and H200).

Without a GPU the measured part is skipped and only the memory arithmetic is printed (`--memory-model`);
`--tiny` runs the same code path on CPU with the kit's tiny models (the test suite runs it).

    python benchmarks/gpu_dpo_step.py                    # on a GPU (benchmarks/gpu_check.sh prepares one)
    python benchmarks/gpu_dpo_step.py --tiny --families qwen2_5_vl --frames 4 --modes lora --references live
    python benchmarks/gpu_dpo_step.py --memory-model     # arithmetic only: what fits on 24/48/80 GB cards
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.util
import json
import math
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# The measured shapes, by family; LoRA as in recipes/*/dpo/config_lora.yaml.
SHAPES = {"qwen2_5_vl": "qwen2_5_vl_7b_instruct", "llava_next_video": "llava_next_video_7b_hf"}
LORA = {"r": 64, "lora_alpha": 128, "lora_dropout": 0.05, "target_modules": "all-linear"}
# The recipes' decode budget (448 x 448) and the clips' frame size (16:9, above the budget, as real uploads are).
MAX_PIXELS = 200_704
CLIP_SIZE = (640, 360)
CLIP_FPS = 10
# Dense bf16 tensor-core peaks from the vendors' data sheets, in FLOP/s, by a substring of the device name.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}
# Text around the video in a training pair: the chat template, the question and an answer (measured on the demo set,
# rounded up), used by the memory arithmetic.
TEXT_TOKENS = {"prompt": 64, "completion": 96}
GIB = 2**30


# --- model arithmetic (no torch run) -------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeSizes:
    """What the FLOP and memory arithmetic needs from one model shape."""

    name: str
    family: str
    parameters: int
    language: int  # decoder layers and norms
    vision: int  # tower and projector
    embedding: int  # input embedding and an untied LM head
    lora: int  # trainable parameters of the recipes' LoRA (r=64, all linear layers but the LM head)
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    vision_layers: int
    vision_hidden: int
    vision_intermediate: int


@functools.cache
def shape_sizes(name: str) -> ShapeSizes:
    """Sizes of shape `name` (`safevid.testing.model_shapes.SHAPES`), counted on a meta-device model (no memory)."""
    import torch

    from safevid.testing.model_shapes import build_shaped_model, count_parameters, load_shape

    model = build_shaped_model(name)
    counts = count_parameters(model)
    head = model.get_output_embeddings()
    lora = sum(
        LORA["r"] * (module.in_features + module.out_features)
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    )
    text, vision = model.config.get_text_config(), model.config.vision_config
    return ShapeSizes(
        name=name,
        family=load_shape(name).family,
        parameters=counts["total"],
        language=counts["language"],
        vision=counts["vision"],
        embedding=counts["embedding"],
        lora=lora,
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        intermediate=text.intermediate_size,
        vocab=text.vocab_size,
        vision_layers=vision.num_hidden_layers,  # Qwen's vision config maps it to `depth`
        vision_hidden=vision.hidden_size,
        vision_intermediate=vision.intermediate_size,
    )


def video_tokens_per_frame(
    name: str, frame_size: tuple[int, int] = CLIP_SIZE, max_pixels: int = MAX_PIXELS
) -> float:
    """Video tokens per frame of shape `name` for frames of `frame_size` decoded under `max_pixels` (the
    `VideoSampling` budget), by the family's processor arithmetic (Qwen: two frames per temporal patch)."""
    from safevid.testing.model_shapes import load_shape

    shape = load_shape(name)
    settings = shape.video_processor
    if shape.family == "llava_next_video":
        side = settings["crop_size"] // settings["patch_size"]
        return side * side / shape.config["spatial_pool_stride"] ** 2
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize

    width, height = _decoded_size(frame_size, max_pixels)
    factor = settings["patch_size"] * settings["merge_size"]
    resized_height, resized_width = smart_resize(
        height, width, factor=factor, min_pixels=settings["min_pixels"], max_pixels=settings["max_pixels"]
    )
    return (resized_height // factor) * (resized_width // factor) / settings["temporal_patch_size"]


def _decoded_size(frame_size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """The frame size `safevid.video` decodes to: scaled down (never up) to at most `max_pixels`, even sides."""
    width, height = frame_size
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return int(width * scale) // 2 * 2, int(height * scale) // 2 * 2


def vision_positions(sizes: ShapeSizes, frames: int, video_tokens: float) -> float:
    """Positions the vision tower processes for one video: Qwen's patches before the 2x2 merge, CLIP's patches plus
    its class token per frame."""
    if sizes.family == "llava_next_video":
        return frames * (video_tokens / frames * 4 + 1)
    return video_tokens * 4


def step_flops(
    sizes: ShapeSizes,
    *,
    frames: int,
    video_tokens: float,
    prompt_text_tokens: float,
    completion_tokens: float,
    mode: str,
    live_reference: bool,
) -> float:
    """Model FLOPs of one DPO step on one preference pair (the formula in this module's docstring)."""
    sequence = video_tokens + prompt_text_tokens + completion_tokens / 2  # each sequence has one completion
    tokens = 2 * sequence
    positions = 2 * vision_positions(sizes, frames, video_tokens)
    dense = 2 * sizes.language * tokens + 2 * sizes.hidden * sizes.vocab * completion_tokens
    dense += 2 * sizes.vision * positions
    attention = 2 * (2 * sizes.layers * sizes.hidden * sequence**2)
    attention += (
        4
        * sizes.vision_layers
        * sizes.vision_hidden
        * positions
        * _vision_window(sizes, frames, video_tokens)
    )
    forward = dense + attention
    policy = 3 * forward if mode == "full" else 2 * dense + 3 * attention
    return policy + (forward if live_reference else 0)


def _vision_window(sizes: ShapeSizes, frames: int, video_tokens: float) -> float:
    """Mean attention span of a vision-tower position: CLIP attends within a frame; Qwen2.5-VL within 112-pixel
    windows (64 patches) in 28 of its 32 blocks and within a temporal patch (two frames) in the other 4."""
    per_frame = vision_positions(sizes, frames, video_tokens) / frames
    if sizes.family == "llava_next_video":
        return per_frame
    return (28 * 64 + 4 * 2 * per_frame) / 32


# --- memory arithmetic ---------------------------------------------------------------------------------------


def memory_gib(
    sizes: ShapeSizes,
    *,
    frames: int,
    batch: int,
    mode: str,
    gpus: int = 1,
    live_reference: bool = False,
    tokens_per_frame: float | None = None,
) -> dict[str, float]:
    """Arithmetic estimate of the memory per GPU of one DPO step, by part, in GiB (not a measurement).

    - `weights`: bf16 weights (2 bytes a parameter), sharded over `gpus` in full mode (ZeRO-3).
    - `reference`: full mode with a live reference holds a second, frozen copy (sharded the same way); LoRA's
      reference is the policy with its adapters off, and a precomputed reference holds nothing.
    - `training`: LoRA: fp32 adapters, gradients and AdamW moments (16 bytes a LoRA parameter, PEFT's default
      upcast); full + ZeRO-3 (`gpus` > 1): bf16 gradients and DeepSpeed's fp32 master weights and moments
      (2 + 12 bytes a parameter, sharded), plus the parameters ZeRO-3 gathers for the running layer (up to 1e9,
      2 bytes each); full on one GPU: bf16 gradients and torch AdamW's moments in the weights' dtype (2 + 4 bytes).
    - `activations`: with gradient checkpointing, every layer's input is kept (the language model: `layers` x T x d,
      the vision tower: its depth x positions x its width; bf16) for 2 x `batch` sequences, plus the working set of
      the one layer being recomputed: T x (10 d + 4 d_ff) x 2 bytes (projections, norms, MLP, LoRA inputs). The LM
      head's logits are never materialised (TRL's fused head); SDPA keeps no T x T matrix.
    - `reserve`: CUDA context, cuBLAS workspaces and allocator slack: 2.5 GiB plus 5 % of the rest.
    """
    tokens_per_frame = tokens_per_frame or video_tokens_per_frame(sizes.name)
    video = frames * tokens_per_frame
    sequence = video + TEXT_TOKENS["prompt"] + TEXT_TOKENS["completion"]
    sequences = 2 * batch
    shard = gpus if mode == "full" else 1
    parts = {"weights": 2 * sizes.parameters / shard}
    parts["reference"] = parts["weights"] if (mode == "full" and live_reference) else 0.0
    if mode == "lora":
        parts["training"] = 16 * sizes.lora
    elif gpus > 1:
        parts["training"] = 14 * sizes.parameters / shard + 2 * min(1e9, sizes.parameters)
    else:
        parts["training"] = 6 * sizes.parameters
    positions = vision_positions(sizes, frames, video)
    kept = sizes.layers * sequence * sizes.hidden + sizes.vision_layers * positions * sizes.vision_hidden
    working = max(
        sequence * (10 * sizes.hidden + 4 * sizes.intermediate),
        positions * (10 * sizes.vision_hidden + 4 * sizes.vision_intermediate),
    )
    parts["activations"] = 2 * sequences * (kept + working)
    parts = {name: value / GIB for name, value in parts.items()}
    parts["reserve"] = 2.5 + 0.05 * sum(parts.values())
    parts["total"] = sum(parts.values())
    return parts


def largest_fit(sizes: ShapeSizes, card_gib: float, *, mode: str, gpus: int, vary: str, fixed: int) -> int:
    """The largest frame count (`vary="frames"`, at batch `fixed`) or batch size (`vary="batch"`, at `fixed` frames)
    whose `memory_gib` total fits on a card of `card_gib`, with a precomputed reference; 0 when none does."""
    best, value = 0, 1 if vary == "batch" else 8
    while value <= (64 if vary == "batch" else 1024):
        frames, batch = (value, fixed) if vary == "frames" else (fixed, value)
        if memory_gib(sizes, frames=frames, batch=batch, mode=mode, gpus=gpus)["total"] > card_gib:
            break
        best, value = value, value * 2
    return best


def memory_table(
    names: tuple[str, ...] = tuple(SHAPES.values()), cards: tuple[int, ...] = (24, 48, 80)
) -> str:
    """The Markdown table of `largest_fit` for every shape, mode and card: frames at batch 1, batch at 16 frames."""
    lines = [
        "Arithmetic, not measurement (`memory_gib`): bf16, gradient checkpointing, precomputed reference, frames "
        f"decoded at {MAX_PIXELS} pixels from {CLIP_SIZE[0]}x{CLIP_SIZE[1]} clips; frame counts tried in powers of 2.\n",
        "| model | video tokens / frame | mode | card | max frames at batch 1 | max batch at 16 frames | GiB at 16 frames, batch 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        sizes = shape_sizes(name)
        per_frame = video_tokens_per_frame(name)
        for mode, gpus, label in (("lora", 1, "LoRA r=64, 1 GPU"), ("full", 8, "full, ZeRO-3 over 8 GPUs")):
            at16 = memory_gib(sizes, frames=16, batch=1, mode=mode, gpus=gpus)["total"]
            for card in cards:
                frames = largest_fit(sizes, card, mode=mode, gpus=gpus, vary="frames", fixed=1)
                batch = largest_fit(sizes, card, mode=mode, gpus=gpus, vary="batch", fixed=16)
                lines.append(
                    f"| {name} | {per_frame:g} | {label} | {card} GB | {frames or '—'} | {batch or '—'} | {at16:.1f} |"
                )
    return "\n".join(lines)


# --- measured runs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    family: str
    mode: str  # "lora" | "full"
    frames: int
    reference: str  # "live" | "precomputed"
    trainer: str = "safevid"  # "safevid" | "trl-images"
    probe: bool = False  # part of the largest-frame-count search


class Bench:
    """The models, processors and data of one benchmark run, and how one setting is measured."""

    def __init__(self, options: argparse.Namespace, workdir: Path):
        import torch

        from safevid.testing.demo_data import build_demo_preference_set
        from safevid.testing.tiny_models import build_tiny_model
        from safevid.training import load_preference_dataset
        from safevid.video import VideoSampling

        self.options, self.workdir = options, workdir
        self.cuda = torch.cuda.is_available() and not (options.tiny or options.smoke_layers)
        self.tiny_paths = {family: build_tiny_model(family) for family in options.families}
        longest = max([*options.frames, options.probe_limit if self.cuda else 0])
        # The GPU machine has no torchcodec build for its torch; PyAV (a wheel with its own FFmpeg) decodes there.
        backend = "torchcodec" if importlib.util.find_spec("torchcodec") else "pyav"
        sampling = VideoSampling(
            num_frames=min(options.frames), max_pixels=None if options.tiny else MAX_PIXELS, backend=backend
        )
        size = {} if options.tiny else {"frame_size": CLIP_SIZE}
        rows = options.warmup + options.steps
        folder = build_demo_preference_set(
            # A name of its own: datasets 5.2 caches a local folder with README configs under its name and README
            # alone, so a folder named like an earlier run's would load that run's rows.
            workdir / f"clips-{workdir.name}",
            num_rows=rows,
            sampling=sampling,
            rows_per_video=rows,  # one clip, decoded once per frame count
            duration=longest / CLIP_FPS + 0.5,
            **size,
        )
        self.dataset = load_preference_dataset(folder, "default")
        self.processors: dict[str, Any] = {}
        self.peak = next(
            (v for k, v in PEAK_BF16.items() if self.cuda and k in torch.cuda.get_device_name()), None
        )
        self.sizes = (
            {family: shape_sizes(SHAPES[family]) for family in options.families} if not options.tiny else {}
        )

    def processor(self, family: str) -> Any:
        if family not in self.processors:
            from transformers import AutoProcessor

            from safevid.testing.model_shapes import build_shaped_processor

            self.processors[family] = (
                AutoProcessor.from_pretrained(self.tiny_paths[family])
                if self.options.tiny
                else build_shaped_processor(SHAPES[family])
            )
        return self.processors[family]

    def model(self, family: str) -> Any:
        if self.options.tiny:
            from transformers import AutoModelForImageTextToText

            return AutoModelForImageTextToText.from_pretrained(self.tiny_paths[family])
        from safevid.testing.model_shapes import build_shaped_model

        return build_shaped_model(
            SHAPES[family],
            device="cuda" if self.cuda else "cpu",
            token_ids_like=self.tiny_paths[family],
            layers=self.options.smoke_layers,
        )

    def predicted_gib(self, setting: Setting) -> float | None:
        if self.options.tiny:
            return None
        return memory_gib(
            self.sizes[setting.family],
            frames=setting.frames,
            batch=1,
            mode=setting.mode,
            live_reference=setting.reference == "live",
        )["total"]

    def run(self, setting: Setting) -> dict[str, Any]:
        """Measure one setting; one the GPU has no memory for comes back with `status="OOM"`, one that fails with
        `status="error: ..."` (the traceback on stderr)."""
        import torch

        predicted = self.predicted_gib(setting)
        result: dict[str, Any] = {"setting": setting, "status": "ok", "predicted_gib": predicted}
        card = torch.cuda.get_device_properties(0).total_memory / GIB if self.cuda else None
        if card and predicted and predicted > 1.15 * card and not setting.probe:
            return {**result, "status": f"skipped: needs ≈{predicted:.0f} GiB by arithmetic"}
        trainer = None
        try:
            trainer, tokens = self._trainer(setting)
            clock = self._clock()
            trainer.add_callback(clock)
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            trainer.train()
            step_s = sum(clock.times[self.options.warmup :]) / len(clock.times[self.options.warmup :])
            result.update(tokens=tokens, step_s=step_s)
            if self.cuda:
                result["peak_gib"] = torch.cuda.max_memory_allocated() / GIB
        except torch.OutOfMemoryError:
            result["status"] = "OOM"
        except Exception as error:  # one broken setting must not lose the others' numbers on a borrowed GPU
            traceback.print_exc()
            result["status"] = f"error: {type(error).__name__}: {str(error)[:160]}"
        finally:
            if trainer is not None:
                trainer.accelerator.free_memory()
            del trainer
            gc.collect()
            if self.cuda:
                torch.cuda.empty_cache()
        return result

    def _clock(self) -> Any:
        import torch

        return _dpo_step().step_clock(torch.cuda.synchronize if self.cuda else None)

    def _common_args(self, setting: Setting) -> dict[str, Any]:
        name = f"{setting.family}-{setting.mode}-{setting.frames}-{setting.reference}-{setting.trainer}"
        return {
            "output_dir": str(self.workdir / "out" / name),
            "use_cpu": not self.cuda,
            "bf16": not self.options.tiny,
            "max_steps": self.options.warmup + self.options.steps,
            "per_device_train_batch_size": 1,
            "gradient_checkpointing": True,
            "learning_rate": 5e-6 if setting.mode == "lora" else 5e-7,
            "logging_steps": self.options.warmup + self.options.steps,
            "save_strategy": "no",
            "report_to": [],
            "disable_tqdm": True,
            "dataloader_num_workers": 0,
            "max_length": None,  # the recipes' 4096 would drop the 32- and 64-frame rows
            "seed": 0,
        }

    def _trainer(self, setting: Setting) -> tuple[Any, dict[str, float]]:
        from peft import LoraConfig

        from safevid.training import VideoDPOConfig, VideoDPOTrainer

        lora = dict(LORA, r=8, lora_alpha=16) if self.options.tiny else LORA
        peft_config = LoraConfig(**lora) if setting.mode == "lora" else None
        model = self.model(setting.family)
        ref_model = (
            self.model(setting.family) if setting.mode == "full" and setting.reference == "live" else None
        )
        processor = self.processor(setting.family)
        common = self._common_args(setting)
        if setting.trainer == "trl-images":
            from trl import DPOConfig, DPOTrainer

            rows, tokens = self._image_rows(setting, processor)
            trainer = DPOTrainer(
                model,
                args=DPOConfig(**common),
                train_dataset=rows,
                processing_class=processor,
                peft_config=peft_config,
                ref_model=ref_model,
            )
            return trainer, tokens
        args = VideoDPOConfig(
            **common,
            cache_dir=str(self.workdir / "cache"),
            precompute_ref_log_probs=setting.reference == "precomputed",
            video_num_frames=setting.frames,
        )
        trainer = VideoDPOTrainer(
            model,
            args=args,
            train_dataset=self.dataset,
            processing_class=processor,
            peft_config=peft_config,
            ref_model=ref_model,
        )
        rows = trainer.train_dataset
        count = len(rows)
        tokens = {
            "vision": sum(rows["num_vision_tokens"]) / count,
            "prompt_text": sum(len(p) for p in rows["prompt_ids"]) / count
            - sum(rows["num_vision_tokens"]) / count,
            "completion": sum(
                len(c) + len(r) for c, r in zip(rows["chosen_ids"], rows["rejected_ids"], strict=True)
            )
            / count,
        }
        return trainer, tokens

    def _image_rows(self, setting: Setting, processor: Any) -> tuple[Any, dict[str, float]]:
        """TRL image-DPO rows of the same frames, as many images as give the video's vision-token count."""
        from datasets import Dataset

        video_tokens = self._video_tokens(setting, processor)
        frames = _dpo_step()._frames_as_images(self.dataset, {"num_frames": setting.frames})
        per_image = self._image_tokens(processor, frames[0][0])
        count = max(1, min(setting.frames, round(video_tokens / per_image)))
        step = setting.frames / count
        rows = [
            {
                "images": [images[int(i * step)] for i in range(count)],
                "prompt": [{"role": "user", "content": row["prompt"]}],
                "chosen": [{"role": "assistant", "content": row["chosen"]}],
                "rejected": [{"role": "assistant", "content": row["rejected"]}],
            }
            for row, images in zip(self.dataset, frames, strict=True)
        ]
        tokenizer = processor.tokenizer
        completion = sum(
            len(tokenizer(row["chosen"]).input_ids) + len(tokenizer(row["rejected"]).input_ids)
            for row in self.dataset
        )
        tokens = {
            "vision": count * per_image,
            "prompt_text": sum(len(tokenizer(row["prompt"]).input_ids) for row in self.dataset)
            / len(self.dataset),
            "completion": completion / len(self.dataset),
        }
        return Dataset.from_list(rows), tokens

    def _video_tokens(self, setting: Setting, processor: Any) -> int:
        """Vision tokens of the clip at the setting's frame count, as the processor expands them."""
        from datasets import Video

        from safevid.families import get_family, video_processor_inputs
        from safevid.video import VideoSampling, sample_video

        row = self.dataset.cast_column("video", Video(decode=False))[0]
        sampling = VideoSampling.from_dict(json.loads(row["sampling"])).overridden(
            {"num_frames": setting.frames}
        )
        token = get_family(processor).video_token
        inputs = video_processor_inputs(processor, [sample_video(row["video"], sampling)])
        out = processor(text=[token], return_tensors="pt", **inputs)
        return int((out["input_ids"] == processor.tokenizer.convert_tokens_to_ids(token)).sum())

    @staticmethod
    def _image_tokens(processor: Any, image: Any) -> int:
        token = processor.image_token
        out = processor(text=[token], images=[image], return_tensors="pt")
        return int((out["input_ids"] == processor.tokenizer.convert_tokens_to_ids(token)).sum())

    def mfu(self, result: dict[str, Any]) -> float | None:
        """Model FLOPs utilisation of a measured video setting (not of TRL's image runs: their images' tower
        positions differ from a video's)."""
        setting = result["setting"]
        if not self.peak or "step_s" not in result or setting.trainer != "safevid":
            return None
        tokens = result["tokens"]
        flops = step_flops(
            self.sizes[setting.family],
            frames=setting.frames,
            video_tokens=tokens["vision"],
            prompt_text_tokens=tokens["prompt_text"],
            completion_tokens=tokens["completion"],
            mode=setting.mode,
            live_reference=setting.reference == "live",
        )
        return flops / result["step_s"] / self.peak


def _dpo_step() -> Any:
    """benchmarks/dpo_step.py, whose step clock and frames-as-images this benchmark shares."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import dpo_step

    return dpo_step


def plan(options: argparse.Namespace) -> list[Setting]:
    """The settings in the order they run: what the targets are about first (LoRA at the TRL comparison's frame
    count, both families, TRL beside them), then LoRA at the other frame counts, then full training."""
    settings = []
    for family in options.families:
        for mode in options.modes:
            for count in sorted(options.frames):
                for reference in options.references:
                    settings.append(Setting(family, mode, count, reference))
                if mode == "lora" and count == options.trl_frames and not options.no_trl:
                    settings.append(Setting(family, mode, count, "live", trainer="trl-images"))
    # A stable sort: families and references keep their order within a group.
    return sorted(settings, key=lambda s: (s.mode != "lora", s.frames != options.trl_frames, s.frames))


def format_table(bench: Bench, results: list[dict[str, Any]], device: str) -> str:
    lines = [
        f"Device: {device}; bf16={not bench.options.tiny}, SDPA, gradient checkpointing, batch 1 (one pair); mean of "
        f"{bench.options.steps} steps after {bench.options.warmup} warm-up.\n",
        "| model | trainer | mode | frames | reference | vision tokens | tokens / pair | step (s) | video tokens/s | MFU "
        "| peak GiB | arithmetic GiB | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def order(result: dict[str, Any]) -> tuple:
        s = result["setting"]
        return (list(SHAPES).index(s.family), s.mode != "lora", s.probe, s.frames, s.trainer, s.reference)

    for result in sorted(results, key=order):
        s = result["setting"]
        model = f"tiny {s.family}" if bench.options.tiny else SHAPES[s.family]
        trainer = "safevid video" if s.trainer == "safevid" else "TRL, frames as images"
        tokens = result.get("tokens")
        pair = 2 * (tokens["vision"] + tokens["prompt_text"]) + tokens["completion"] if tokens else None
        step = result.get("step_s")
        mfu = bench.mfu(result)
        lines.append(
            "| "
            + " | ".join(
                [
                    model,
                    trainer + (" (size probe)" if s.probe else ""),
                    s.mode,
                    str(s.frames),
                    s.reference,
                    f"{tokens['vision']:.0f}" if tokens else "—",
                    f"{pair:.0f}" if pair else "—",
                    f"{step:.3f}" if step else "—",
                    f"{tokens['vision'] / step:.0f}" if step else "—",
                    f"{mfu:.1%}" if mfu is not None else "—",
                    f"{result['peak_gib']:.1f}" if "peak_gib" in result else "—",
                    f"{result['predicted_gib']:.1f}" if result.get("predicted_gib") else "—",
                    result["status"],
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def ratios(results: list[dict[str, Any]]) -> list[str]:
    """Video step over TRL's image step at equal vision tokens, per family and frame count."""
    lines = []
    by_key = {
        (
            r["setting"].family,
            r["setting"].frames,
            r["setting"].trainer,
            r["setting"].reference,
            r["setting"].mode,
        ): r
        for r in results
    }
    for (family, frames, trainer, _, mode), image in by_key.items():
        video = by_key.get((family, frames, "safevid", "live", mode))
        if trainer != "trl-images" or not video or "step_s" not in video or "step_s" not in image:
            continue
        lines.append(
            f"| {family} | {frames} | {video['step_s'] / image['step_s']:.2f} "
            f"(vision tokens {video['tokens']['vision']:.0f} vs {image['tokens']['vision']:.0f}) | ≤ 1.1 |"
        )
    if lines:
        lines = ["| family | frames | video step / TRL image step | target |", "|---|---|---|---|", *lines]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="CPU, the kit's tiny models (the test suite's run)"
    )
    parser.add_argument("--memory-model", action="store_true", help="print the memory arithmetic only")
    parser.add_argument(
        "--smoke-layers",
        type=int,
        help="CPU: the real shapes and processors cut to this many layers (a check of the GPU path, not a timing)",
    )
    parser.add_argument("--families", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--modes", nargs="+", default=["lora", "full"], choices=["lora", "full"])
    parser.add_argument("--frames", nargs="+", type=int, default=[8, 16, 32, 64])
    parser.add_argument(
        "--references", nargs="+", default=["live", "precomputed"], choices=["live", "precomputed"]
    )
    parser.add_argument(
        "--trl-frames", type=int, default=16, help="frame count of the TRL image-DPO comparison"
    )
    parser.add_argument("--no-trl", action="store_true", help="skip the TRL image-DPO comparison")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--probe-limit", type=int, default=256, help="largest frame count the size search tries"
    )
    parser.add_argument(
        "--budget-s", type=float, default=420, help="start no new setting after this many seconds"
    )
    options = parser.parse_args()

    import torch

    if options.memory_model or not (options.tiny or options.smoke_layers or torch.cuda.is_available()):
        if not options.memory_model:
            print("No GPU here: the measured part needs one (or --tiny for the CPU run). The arithmetic:\n")
        print(memory_table())
        return 0
    start = time.perf_counter()
    device = (
        "CPU (tiny kit models)"
        if options.tiny
        else f"CPU (real widths, {options.smoke_layers} layers)"
        if options.smoke_layers
        else torch.cuda.get_device_name()
    )
    # The trainers' logs go to stderr, so stdout holds the table alone.
    with (
        tempfile.TemporaryDirectory(prefix="safevid-bench-gpu-dpo-") as tmp,
        contextlib.redirect_stdout(sys.stderr),
    ):
        bench = Bench(options, Path(tmp))
        results = []
        for setting in plan(options):
            # A quarter of the budget is kept for the search of the largest frame count.
            if time.perf_counter() - start > options.budget_s * (0.75 if bench.cuda else 1):
                results.append({"setting": setting, "status": "not run (time budget)"})
                continue
            results.append(bench.run(setting))
            print(
                f"# {setting}: {results[-1]['status']} ({time.perf_counter() - start:.0f} s)", file=sys.stderr
            )
        if bench.cuda:
            results += probe_largest(bench, results, start)
    print(format_table(bench, results, device))
    print()
    print("\n".join(ratios(results)))
    return 0


def probe_largest(bench: Bench, results: list[dict[str, Any]], start: float) -> list[dict[str, Any]]:
    """Double the frame count of the LoRA + precomputed-reference run past the largest measured one until a step
    runs out of memory (or the probe limit or the time budget is reached)."""
    probes = []
    for family in bench.options.families:
        fitted = [
            r["setting"].frames for r in results if r["setting"].family == family and r["status"] == "ok"
        ]
        frames = 2 * max(fitted, default=4)
        while frames <= bench.options.probe_limit and time.perf_counter() - start <= bench.options.budget_s:
            probes.append(bench.run(Setting(family, "lora", frames, "precomputed", probe=True)))
            if probes[-1]["status"] != "ok":
                break
            frames *= 2
    return probes


if __name__ == "__main__":
    sys.exit(main())
