"""Helpers shared by several test modules (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from safevid.backends import Backend, BackendConfig, ChatResult, Choice

SNAPSHOTS = Path(__file__).parent / "snapshots"


def assert_snapshot(name: str, text: str) -> None:
    """Compare a rendered prompt with ``tests/snapshots/<name>.txt``.

    With ``SAFEVID_UPDATE_SNAPSHOTS=1`` the snapshot is (re)written instead, for review in the diff.
    """
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("SAFEVID_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"No snapshot {path}; create it with SAFEVID_UPDATE_SNAPSHOTS=1 and review it"
    assert text == path.read_text(encoding="utf-8"), (
        f"Rendered prompt differs from {path}; if intended, refresh with SAFEVID_UPDATE_SNAPSHOTS=1"
    )


def tiny_dpo_config(output_dir: Path, cache_dir: Path, **overrides: Any) -> Any:
    """A `VideoDPOConfig` for a few CPU steps on a tiny model: 2 steps of batch 2, loss logged every step."""
    from safevid.training import VideoDPOConfig

    settings = {
        "output_dir": str(output_dir),
        "cache_dir": str(cache_dir),
        "use_cpu": True,
        "bf16": False,
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "learning_rate": 5e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": 0,
    }
    return VideoDPOConfig(**{**settings, **overrides})


class Recorder(Backend):
    """A local video model that declines everything and keeps, in ``seen``, the ``(prompt, frames)`` of every
    request it answers (frames as a uint8 (T, C, H, W) tensor): what a run showed the model is the assertion."""

    kind = "recorder"

    def __init__(self) -> None:
        super().__init__(BackendConfig(model="recorder", cache=False))
        self.seen: list[tuple[str, Any]] = []

    def _generate(self, requests: Any, hooks: Any) -> None:
        import torch

        for position, request in enumerate(requests):
            content = request.messages[0]["content"]
            [video] = [part["video"] for part in content if part["type"] == "video"]
            [prompt] = [part["text"] for part in content if part["type"] == "text"]
            self.seen.append((prompt, torch.as_tensor(video.frames).clone()))
            hooks.finish(position, ChatResult(request.id, [Choice("I can't help with that.", "stop")]))
