"""Precomputed reference log-probs (which TRL refuses for image data) and resuming from a checkpoint."""

from __future__ import annotations

import pytest

from safevid.testing.tiny_models import build_tiny_model
from safevid.training import VideoDPOTrainer, load_preference_dataset

from helpers import tiny_dpo_config


def _trainer(demo_set, cache, out, **overrides) -> VideoDPOTrainer:
    return VideoDPOTrainer(
        str(build_tiny_model("qwen2_5_vl")),
        args=tiny_dpo_config(out, cache, **overrides),
        train_dataset=load_preference_dataset(demo_set),
    )


def _losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_precomputed_reference_matches_the_live_one_and_is_reused(demo_set, tmp_path, monkeypatch):
    live = _trainer(demo_set, tmp_path / "cache", tmp_path / "live")
    live.train()
    pre = _trainer(demo_set, tmp_path / "cache", tmp_path / "pre", precompute_ref_log_probs=True)
    assert {"ref_chosen_logps", "ref_rejected_logps"} <= set(pre.train_dataset.column_names)
    assert pre.ref_model is None  # no frozen copy kept in memory
    pre.train()
    # Step 1: policy == reference; step 2: the policy moved, so the loss reads the reference log-probs.
    assert _losses(pre) == pytest.approx(_losses(live), abs=1e-4)
    assert _losses(pre)[1] < _losses(pre)[0]

    # A second run finds them by hash (dataset, processor, sampling, reference weights): no reference forward.
    def no_forward(*_, **__):
        raise AssertionError("reference log-probs computed again")

    monkeypatch.setattr(VideoDPOTrainer, "compute_ref_log_probs", no_forward)
    again = _trainer(demo_set, tmp_path / "cache", tmp_path / "again", precompute_ref_log_probs=True)
    assert again.train_dataset["ref_chosen_logps"] == pre.train_dataset["ref_chosen_logps"]


def test_resume_from_a_checkpoint_continues_the_same_run(demo_set, tmp_path):
    whole = _trainer(
        demo_set, tmp_path / "cache", tmp_path / "whole", max_steps=3, per_device_train_batch_size=1
    )
    whole.train()
    out = tmp_path / "resumed"
    first = _trainer(
        demo_set,
        tmp_path / "cache",
        out,
        max_steps=3,
        per_device_train_batch_size=1,
        save_strategy="steps",
        save_steps=2,
    )
    first.train()
    assert (out / "checkpoint-2").is_dir()
    resumed = _trainer(demo_set, tmp_path / "cache", out, max_steps=3, per_device_train_batch_size=1)
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    assert resumed.state.global_step == 3
    assert _losses(resumed)[-1] == pytest.approx(_losses(whole)[-1], abs=1e-4)
    assert (out / "README.md").read_text().count("safevid:results") == 2  # the card is written at save
