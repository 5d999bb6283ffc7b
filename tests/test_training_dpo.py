"""A few DPO steps per video family, full and LoRA, on tiny random-weight models (CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from safevid.families import get_family
from safevid.testing.tiny_models import VIDEO_FAMILIES, build_tiny_model
from safevid.training import VideoDPOConfig, VideoDPOTrainer, load_preference_dataset

from helpers import tiny_dpo_config


def _args(tmp_path, **overrides) -> VideoDPOConfig:
    return tiny_dpo_config(tmp_path / "out", tmp_path / "cache", max_length=2048, **overrides)


def _blank(rows, store):
    """The same rows pointing at black frames of the same shape (new entries in the frame store)."""

    def blank(row):
        frames, metadata = store.load(row["frame_key"])
        key = f"blank-{row['frame_key']}"
        store.put(key, np.zeros_like(frames), metadata)
        return {"frame_key": key}

    return rows.map(blank)


@pytest.mark.parametrize("mode", ["full", "lora"])
@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_dpo_steps_train_the_video_path(family, mode, demo_set, tmp_path):
    from peft import LoraConfig

    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear") if mode == "lora" else None
    trainer = VideoDPOTrainer(
        str(build_tiny_model(family)),
        # Gradient checkpointing (TRL's default) stays on: it must work through the vision tower.
        args=_args(tmp_path, gradient_checkpointing=True),
        train_dataset=load_preference_dataset(demo_set, "conversational" if mode == "lora" else "default"),
        peft_config=peft_config,
    )
    tower = get_family(trainer.model).get_vision_tower(trainer.model)
    watched = {name: p.detach().clone() for name, p in tower.named_parameters() if p.requires_grad}
    trainable = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    frozen = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if not p.requires_grad}
    assert watched, "the vision tower has nothing trainable"
    trainer.train()

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at the first step
    params = dict(trainer.model.named_parameters())
    changed = [name for name, before in trainable.items() if not torch.equal(before, params[name])]
    assert len(changed) > len(trainable) // 2
    # The vision tower received gradients: its trainable weights (LoRA: its adapters) moved.
    tower_params = dict(tower.named_parameters())
    assert any(not torch.equal(before, tower_params[name]) for name, before in watched.items())
    if mode == "lora":
        assert all(torch.equal(before, params[name]) for name, before in frozen.items())

    # The loss depends on the frames: the same rows with blanked frames give another loss.
    rows = trainer.train_dataset.select(range(2))
    with torch.no_grad():
        real = trainer.compute_loss(trainer.model, trainer.data_collator(list(rows)))
        blanked = _blank(rows, trainer.data_collator.frame_store)
        blank = trainer.compute_loss(trainer.model, trainer.data_collator(list(blanked)))
    assert not torch.isclose(real, blank, atol=1e-5)
