from __future__ import annotations

import argparse
import hashlib
import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from safevid.families import get_family, video_processor_inputs
from safevid.testing import tiny_models
from safevid.testing.commands import tiny_models as tiny_models_command
from safevid.testing.tiny_models import (
    FAMILIES,
    KIT_VERSION,
    VIDEO_FAMILIES,
    build_tiny_model,
    load_manifest,
    tiny_model_cache_dir,
)

# The processor class each family must ship, as the real checkpoints do.
PROCESSOR_CLASSES = {
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen3_vl": "Qwen3VLProcessor",
    "llava_next_video": "LlavaNextVideoProcessor",
    "llava_onevision": "LlavaOnevisionProcessor",
}


class Clip:
    """8 frames sampled uniformly from a 2 s, 30 fps source (what `safevid.video.SampledVideo` carries)."""

    def __init__(self, seed: int = 0, num_frames: int = 8, height: int = 48, width: int = 64) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.frames = torch.randint(
            0, 256, (num_frames, 3, height, width), dtype=torch.uint8, generator=generator
        )
        self.indices = [round(i * 60 / num_frames) for i in range(num_frames)]

    def transformers_metadata(self):
        from transformers.video_utils import VideoMetadata

        return VideoMetadata(total_num_frames=60, fps=30.0, duration=2.0, frames_indices=self.indices)


@pytest.fixture(scope="session")
def checkpoints() -> dict[str, Path]:
    return {family: build_tiny_model(family) for family in FAMILIES}


def _state_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(path / "model.safetensors").items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_video_family_reloads_offline_and_generates_on_a_video(checkpoints, family):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = checkpoints[family]
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    assert type(processor).__name__ == PROCESSOR_CLASSES[family]
    assert model.config.model_type == load_manifest(path)["model_type"]
    assert 100_000 <= model.num_parameters() <= 1_000_000

    # The video placeholder is one special token, never split by the BPE.
    video_token = get_family(model).video_token
    assert processor.tokenizer.tokenize(video_token) == [video_token]

    messages = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens here?"}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert video_token in prompt
    inputs = processor(text=[prompt], **video_processor_inputs(processor, [Clip()]), return_tensors="pt")
    # A small pixel budget: an 8-frame clip is a few dozen video tokens.
    num_video_tokens = int((inputs["input_ids"] == get_family(model).video_token_id(model.config)).sum())
    assert 8 <= num_video_tokens <= 300

    output = model.generate(**inputs)
    new_tokens = output.shape[1] - inputs["input_ids"].shape[1]
    assert 1 <= new_tokens <= model.generation_config.max_new_tokens
    assert model.generation_config.eos_token_id is not None
    assert model.generation_config.pad_token_id is not None


def test_text_family_reloads_offline_and_generates(checkpoints):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(checkpoints["text"])
    tokenizer = AutoTokenizer.from_pretrained(checkpoints["text"])
    assert model.config.model_type == "qwen2"
    assert 100_000 <= model.num_parameters() <= 1_000_000
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Describe the video."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    prompt = tokenizer.decode(inputs["input_ids"][0])
    assert prompt.endswith("<|im_start|>assistant\n")
    output = model.generate(**inputs)
    assert 1 <= output.shape[1] - inputs["input_ids"].shape[1] <= model.generation_config.max_new_tokens


def test_tokenizer_round_trips_text_it_never_saw(checkpoints):
    from transformers import AutoTokenizer

    for family in ("qwen2_5_vl", "llava_next_video"):
        tokenizer = AutoTokenizer.from_pretrained(checkpoints[family])
        text = "Zürich 🚲 — naïve façade"
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert len(tokenizer) <= 4096


def test_same_seed_same_weights_other_seed_other_weights(checkpoints, tmp_path):
    again = build_tiny_model("qwen2_vl", tmp_path / "again", seed=0)
    other = build_tiny_model("qwen2_vl", tmp_path / "other", seed=1)
    assert _state_digest(again) == _state_digest(checkpoints["qwen2_vl"])
    assert (again / "tokenizer.json").read_bytes() == (
        checkpoints["qwen2_vl"] / "tokenizer.json"
    ).read_bytes()
    assert _state_digest(other) != _state_digest(again)
    assert load_manifest(other)["seed"] == 1


def test_build_does_not_disturb_the_callers_random_state(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model("text", tmp_path / "text", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_cached_checkpoint_is_reused_not_rebuilt(checkpoints, monkeypatch):
    path = checkpoints["llava_onevision"]
    assert path == tiny_model_cache_dir("llava_onevision", 0)
    import transformers

    assert f"kit{KIT_VERSION}" in path.name
    assert transformers.__version__ in path.name

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached checkpoint should have been reused")

    monkeypatch.setattr(tiny_models, "_write_checkpoint", no_rebuild)
    assert build_tiny_model("llava_onevision") == path


def test_overwrite_rebuilds_and_foreign_folder_is_refused(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        build_tiny_model("text", target)
    assert (target / "notes.txt").read_text() == "mine"

    build_tiny_model("text", target, overwrite=True)
    assert not (target / "notes.txt").exists()
    assert load_manifest(target)["family"] == "text"
    # A checkpoint of another seed is not silently reused either.
    with pytest.raises(FileExistsError):
        build_tiny_model("text", target, seed=1)


def test_concurrent_builders_leave_one_complete_checkpoint(tmp_path):
    target = tmp_path / "shared"
    results, errors = [], []

    def build() -> None:
        try:
            results.append(build_tiny_model("text", target, seed=3))
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [target] * 3
    assert load_manifest(target)["seed"] == 3
    # No staging folders are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'gpt_video'.*qwen2_5_vl, qwen2_vl, qwen3_vl, llava_next_video"):
        build_tiny_model("gpt_video")


def test_cli_builds_and_prints_paths(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    tiny_models_command.add_arguments(parser)
    args = parser.parse_args(["--family", "text", "--output-dir", str(tmp_path), "--seed", "2"])
    assert tiny_models_command.run(args) == 0
    line = capsys.readouterr().out.strip()
    family, architecture, _, path = line.split("\t")
    assert (family, architecture) == ("text", "Qwen2ForCausalLM")
    assert Path(path) == tmp_path / "text"
    assert json.loads((tmp_path / "text" / "safevid_tiny_model.json").read_text())["seed"] == 2
    # --path-only prints the folder alone, for `--model_name_or_path $(python -m safevid.testing tiny-models ... --path-only)`.
    args = parser.parse_args(
        ["--family", "text", "--output-dir", str(tmp_path), "--seed", "2", "--path-only"]
    )
    assert tiny_models_command.run(args) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'text'}\n"
    with pytest.raises(SystemExit):
        parser.parse_args(["--family", "gpt_video"])
