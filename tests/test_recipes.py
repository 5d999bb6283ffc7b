"""Recipes cannot drift: every YAML parses through the real parser, and the script runs under its launchers."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from safevid.testing.tiny_models import build_tiny_model

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
TRAINING_YAMLS = sorted(RECIPES.glob("*/dpo/*.yaml"))
ACCELERATE_YAMLS = sorted((RECIPES / "accelerate_configs").glob("*.yaml"))
BIN = Path(sys.executable).parent


def _parser():
    spec = importlib.util.spec_from_file_location("recipe_dpo", RECIPES / "dpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_parser()


def test_the_recipes_that_must_exist_exist():
    names = {path.relative_to(RECIPES).as_posix() for path in TRAINING_YAMLS}
    for model in ("LLaVA-NeXT-Video-7B", "Qwen2.5-VL-7B"):
        assert {f"{model}/dpo/config_lora.yaml", f"{model}/dpo/config_full.yaml"} <= names
    assert {path.stem for path in ACCELERATE_YAMLS} == {"ddp", "zero2", "zero3", "fsdp"}


@pytest.mark.parametrize("path", TRAINING_YAMLS, ids=lambda p: p.relative_to(RECIPES).as_posix())
def test_every_recipe_parses_through_the_real_parser(path):
    # GPU recipes ask for bf16, which TrainingArguments refuses on a CPU box: only the hardware flags change.
    hardware = ["--bf16", "false", "--use_cpu", "true"] if "tiny" not in path.parts else []
    extra = ["--model_name_or_path", "m", "--dataset_name", "d"] if "tiny" in path.parts else []
    script, training, model = _parser().parse_args_and_config(["--config", str(path), *hardware, *extra])
    config = yaml.safe_load(path.read_text())
    assert training.beta == config["beta"]
    assert training.learning_rate == config["learning_rate"]
    assert model.use_peft == config.get("use_peft", False) == path.stem.endswith("lora")
    assert training.trust_remote_code is False
    if "tiny" not in path.parts:
        assert script.dataset_name
        assert model.model_name_or_path == config["model_name_or_path"]
        assert training.sampling_overrides()["num_frames"] == config["video_num_frames"]
        readme = (path.parent / "README.md").read_text()
        command = (
            "accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/dpo.py "
            f"--config recipes/{path.parent.parent.name}/dpo/{path.name}"
        )
        assert command in readme


def test_unknown_yaml_keys_are_an_error(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("beta: 0.1\nbetta: 0.2\nuse_cpu: true\nbf16: false\n")
    with pytest.raises(ValueError, match=r"Unknown arguments from config file: \['--betta', '0.2'\]"):
        _parser().parse_args_and_config(["--config", str(config)])


@pytest.mark.parametrize("path", ACCELERATE_YAMLS, ids=lambda p: p.stem)
def test_accelerate_configs_load_as_accelerate_configs(path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin

    config = load_config_from_file(str(path))
    expected = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}[path.stem]
    assert config.distributed_type == DistributedType[expected]
    assert config.mixed_precision == "bf16"
    if expected == "DEEPSPEED":
        # DeepSpeed itself is an extra: check the keys against the plugin the launcher fills from them.
        known = {f.name for f in dataclasses.fields(DeepSpeedPlugin)} | {"deepspeed_multinode_launcher"}
        assert set(config.deepspeed_config) <= known
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])
    if expected == "FSDP":
        names = [f.name for f in dataclasses.fields(FullyShardedDataParallelPlugin)]
        known = {name if name.startswith("fsdp_") else f"fsdp_{name}" for name in names}
        known |= {"fsdp_offload_params"}  # the launcher's name for `cpu_offload`
        assert set(config.fsdp_config) <= known
        assert config.fsdp_config["fsdp_version"] == 2


def _run(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _recipe_args(demo_set, tmp_path, family="qwen2_5_vl") -> list[str]:
    return [
        str(RECIPES / "dpo.py"),
        "--config", str(RECIPES / "tiny" / "dpo" / "config_lora.yaml"),
        "--model_name_or_path", str(build_tiny_model(family)),
        "--dataset_name", str(demo_set),
        "--output_dir", str(tmp_path / "out"),
        "--cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip


def test_accelerate_launch_runs_the_recipe(demo_set, tmp_path):
    proc = _run(
        [str(BIN / "accelerate"), "launch", "--cpu", "--num_processes", "1", "--mixed_precision", "no",
         *_recipe_args(demo_set, tmp_path, "llava_next_video")],
        tmp_path,
    )  # fmt: skip
    assert "[safevid] train: kept 4 of 4 rows" in proc.stdout
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").is_file()
    # Train metrics and trainer state saved, as TRL's scripts do.
    train_results = json.loads((out / "train_results.json").read_text())
    assert train_results["train_samples"] == 4
    assert "train_loss" in train_results
    assert json.loads((out / "all_results.json").read_text())["train_samples"] == 4
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == state["max_steps"] > 0
    card = (out / "README.md").read_text()
    assert "| `beta` | `0.1` |" in card
    assert '"num_frames": 4' in card


def test_two_cpu_ranks_with_torchrun(demo_set, tmp_path):
    proc = _run(
        [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port()),
         *_recipe_args(demo_set, tmp_path)],
        tmp_path,
    )  # fmt: skip
    # Rank 0 decoded the videos into the frame store and prepared the rows; rank 1 read both (the report is
    # printed once, by the main process).
    assert proc.stdout.count("[safevid] train: kept 4 of 4 rows") == 1
    assert len(list((tmp_path / "cache").glob("rows-*.arrow"))) == 1
    # One frame store entry per distinct video (the demo rows alternate between two), no temporary file left.
    from safevid.training import load_preference_dataset

    videos = set(load_preference_dataset(demo_set)["video_id"])
    assert len(list((tmp_path / "cache" / "frames").glob("*/*.npy"))) == len(videos) == 2
    assert not list((tmp_path / "cache" / "frames").glob("*/*.tmp"))
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert "| `world size` | `2` |" in (tmp_path / "out" / "README.md").read_text()


def test_push_to_hub_with_a_model_card(demo_set, tmp_path, loopback_hub):
    from huggingface_hub import hf_hub_download
    from peft import LoraConfig

    from safevid.testing.hub import DUMMY_TOKEN
    from safevid.training import VideoDPOConfig, VideoDPOTrainer, load_preference_dataset

    repo_id = loopback_hub.unique_repo_id("tiny-video-dpo")
    args = VideoDPOConfig(
        output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), use_cpu=True, bf16=False,
        max_steps=1, per_device_train_batch_size=2, report_to=[], save_strategy="no",
        push_to_hub=True, hub_model_id=repo_id, beta=0.25,
    )  # fmt: skip
    trainer = VideoDPOTrainer(
        str(build_tiny_model("qwen2_vl")),
        args=args,
        train_dataset=load_preference_dataset(demo_set, "conversational"),
        peft_config=LoraConfig(r=4, target_modules="all-linear"),
        dataset_name="safevid/SafeVid-350K",
    )
    trainer.train()
    trainer.push_to_hub(dataset_name="safevid/SafeVid-350K")
    files = loopback_hub.files(repo_id)
    assert {"README.md", "adapter_model.safetensors", "adapter_config.json"} <= set(files)
    card = Path(hf_hub_download(repo_id, "README.md")).read_text()
    assert "| `beta` | `0.25` |" in card
    assert "- safevid/SafeVid-350K" in card
    assert "| `r` | `4` |" in card
    assert "<!-- safevid:results:begin -->" in card
    assert '"num_frames": 4' in card
    assert DUMMY_TOKEN not in card
    assert "hf_" not in card.replace("hf_jobs", "")
