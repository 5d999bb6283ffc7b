"""The real model shapes (`safevid.testing.model_shapes`) and `benchmarks/gpu_dpo_step.py`: its arithmetic, and its
measured path end to end on CPU with the tiny kit models (the GPU run uses the same code)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from safevid.testing.model_shapes import (
    SHAPES,
    build_shaped_model,
    build_shaped_processor,
    count_parameters,
    load_shape,
)
from safevid.testing.tiny_models import build_tiny_model

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_dpo_step.py"

# Parameter counts as the Hub pages and loaders report them (verl prints 8.29B for Qwen2.5-VL-7B-Instruct).
PUBLISHED_BILLIONS = {
    "qwen2_5_vl_7b_instruct": 8.29,
    "qwen2_5_vl_3b_instruct": 3.75,
    "llava_next_video_7b_hf": 7.06,
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_dpo_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SHAPES)
def test_shapes_build_at_their_published_size_on_the_meta_device(name):
    model = build_shaped_model(name)
    counts = count_parameters(model)
    assert round(counts["total"] / 1e9, 2) == PUBLISHED_BILLIONS[name]
    assert counts["total"] == counts["vision"] + counts["embedding"] + counts["language"]
    assert all(parameter.device.type == "meta" for parameter in model.parameters())
    assert model.config._attn_implementation == "sdpa"
    published = load_shape(name).config
    assert model.config.get_text_config().vocab_size == published.get("text_config", published)["vocab_size"]


def test_token_ids_follow_the_kit_tokenizer_and_the_vocabulary_keeps_its_size():
    tiny = build_tiny_model("qwen2_5_vl")
    model = build_shaped_model("qwen2_5_vl_7b_instruct", token_ids_like=tiny)
    from transformers import AutoConfig

    donor = AutoConfig.from_pretrained(tiny)
    assert model.config.video_token_id == donor.video_token_id != 151656
    assert model.config.vision_start_token_id == donor.vision_start_token_id
    assert model.get_input_embeddings().weight.shape == (152064, 3584)


def test_token_ids_from_another_family_are_refused():
    with pytest.raises(ValueError, match="family 'llava_next_video'"):
        build_shaped_model("llava_next_video_7b_hf", token_ids_like=build_tiny_model("qwen2_5_vl"))


def test_an_unknown_shape_names_the_known_ones():
    with pytest.raises(ValueError, match="qwen2_5_vl_7b_instruct"):
        load_shape("qwen2_5_vl_70b")


def test_layers_cut_keeps_the_widths():
    model = build_shaped_model("qwen2_5_vl_7b_instruct", layers=1)
    config = model.config
    assert config.get_text_config().num_hidden_layers == 1
    assert config.vision_config.depth == 1
    assert config.vision_config.fullatt_block_indexes == [0]
    assert config.get_text_config().hidden_size == 3584


@pytest.mark.parametrize("name", ["qwen2_5_vl_7b_instruct", "llava_next_video_7b_hf"])
def test_the_real_processor_expands_as_many_video_tokens_as_the_arithmetic_counts(name, bench, tmp_path):
    from safevid.families import get_family, video_processor_inputs
    from safevid.testing.videos import make_test_video
    from safevid.video import VideoSampling, sample_video

    clip = make_test_video(tmp_path / "clip.mp4", width=640, height=360, duration=1.0, fps=10)
    video = sample_video(clip, VideoSampling(num_frames=4, max_pixels=bench.MAX_PIXELS, backend="pyav"))
    processor = build_shaped_processor(name)
    token = get_family(processor).video_token
    out = processor(text=[token], return_tensors="pt", **video_processor_inputs(processor, [video]))
    made = int((out["input_ids"] == processor.tokenizer.convert_tokens_to_ids(token)).sum())
    assert made == 4 * bench.video_tokens_per_frame(name)


def test_memory_arithmetic_by_part(bench):
    sizes = bench.shape_sizes("qwen2_5_vl_7b_instruct")
    lora = bench.memory_gib(sizes, frames=16, batch=1, mode="lora")
    assert lora["weights"] == pytest.approx(2 * sizes.parameters / 2**30)
    assert lora["reference"] == 0  # the adapter-disabled policy is the reference
    assert lora["training"] == pytest.approx(16 * sizes.lora / 2**30)
    full = bench.memory_gib(sizes, frames=16, batch=1, mode="full", gpus=8, live_reference=True)
    assert full["weights"] == pytest.approx(lora["weights"] / 8)
    assert full["reference"] == full["weights"]
    assert lora["total"] == pytest.approx(sum(v for k, v in lora.items() if k != "total"))
    more = bench.memory_gib(sizes, frames=32, batch=2, mode="lora")
    assert more["activations"] == pytest.approx(4 * lora["activations"], rel=0.1)
    assert more["weights"] == lora["weights"]


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_largest_fit_is_the_last_power_of_two_under_the_card(bench, mode):
    sizes = bench.shape_sizes("llava_next_video_7b_hf")
    frames = bench.largest_fit(sizes, 48, mode=mode, gpus=8, vary="frames", fixed=1)
    assert frames >= 8
    assert bench.memory_gib(sizes, frames=frames, batch=1, mode=mode, gpus=8)["total"] <= 48
    assert bench.memory_gib(sizes, frames=2 * frames, batch=1, mode=mode, gpus=8)["total"] > 48
    assert bench.largest_fit(sizes, 8, mode=mode, gpus=8, vary="frames", fixed=1) == 0  # not even 8 frames


def test_memory_table_has_a_row_per_shape_mode_and_card(bench):
    table = bench.memory_table(cards=(24, 80))
    rows = [line for line in table.splitlines() if line.startswith("| qwen") or line.startswith("| llava")]
    assert len(rows) == 2 * 2 * 2
    assert "Arithmetic, not measurement" in table


def test_step_flops_count_three_passes_for_full_and_one_more_for_a_live_reference(bench):
    sizes = bench.shape_sizes("qwen2_5_vl_7b_instruct")
    tokens = {"frames": 16, "video_tokens": 2016, "prompt_text_tokens": 40, "completion_tokens": 80}
    full = bench.step_flops(sizes, mode="full", live_reference=False, **tokens)
    forward = bench.step_flops(sizes, mode="full", live_reference=True, **tokens) - full
    assert full == pytest.approx(3 * forward)
    lora = bench.step_flops(sizes, mode="lora", live_reference=False, **tokens)
    assert 2 * forward < lora < full
    # The decoder's dense part alone: 2 FLOPs per parameter and token, forward.
    assert forward > 2 * sizes.language * 2 * (2016 + 40 + 40)


def test_tiny_run_prints_one_table_with_trl_beside_it():
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--tiny",
            "--families",
            "qwen2_5_vl",
            "--frames",
            "4",
            "--modes",
            "lora",
            "--references",
            "live",
            "--trl-frames",
            "4",
            "--steps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| tiny qwen2_5_vl")]
    assert [row[1] for row in rows] == ["safevid video", "TRL, frames as images"]
    assert all(row[-1] == "ok |" for row in rows)
    # The tiny processor's pixel budget fixes the vision tokens: 4 frames of the demo clip, two per temporal patch.
    assert [row[5] for row in rows] == ["12", "12"]
    assert "| qwen2_5_vl | 4 |" in proc.stdout  # the video / TRL image step ratio
