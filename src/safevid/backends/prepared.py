"""Videos prepared for a request in a decode worker: frames from the frame store, encoded for the backend's wire.

A stage or run that sends videos to a model prepares them in a `safevid.video.pool.DecodePool` with
`prepare_video` (``PREPARE_VIDEO``), ahead of its requests: the frames come from a
`safevid.video.frame_store.FrameStore` (decoded and stored only when the entry is missing, so each video is decoded
once per sampling) and are encoded for the wire in the worker too (`Backend.media_encoding`), off the main process.
A local engine, which takes the frames themselves (no wire encoding), has the worker only make sure the entry is
there and reads it in-process: memory-mapped, it costs nothing to read. The data build's describe stage and the
evaluation harness both prepare their videos this way.

Disk: an entry holds the sampled frames uncompressed (``num_frames × height × width × 3`` bytes after the
``max_pixels`` budget).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safevid.video.frame_store import stored_video

PREPARE_VIDEO = "safevid.backends.prepared:prepare_video"


@dataclass(frozen=True)
class PreparedVideo:
    """A video ready for a request, made in a decode worker.

    Attributes:
        metadata (`dict`): `SampledVideo.metadata()` of its frames.
        parts (`list[dict]`, *optional*): the frames as wire content parts, when the backend takes them so.
        decoded (`bool`): whether the video was decoded for this (else read from the frame store).
        sampled (`SampledVideo`, *optional*): the frames themselves, when prepared in-process for a local engine.
    """

    metadata: dict[str, Any]
    parts: list[dict[str, Any]] | None
    decoded: bool
    sampled: Any = None


# The video ablations of an evaluation (`EvalConfig.video_ablation`): what each does to the sampled frames.
# Every one keeps the frame count, size and timestamps of the sampling; only which pixels sit at each timestamp changes.
VIDEO_ABLATIONS = {
    "blank": "all-black frames (a blind baseline)",
    "reverse": "the frames in reverse order (motion runs backwards)",
    "shuffle": "the frames in a seeded random order, never the original one",
    "single-frame": "the middle frame repeated to the sampled count (no motion at all)",
}


def ablated(sampled: Any, ablation: str | None, seed: str = "0") -> Any:
    """``sampled`` with its frames changed by ``ablation`` (`VIDEO_ABLATIONS`; `None`: unchanged).

    ``seed`` seeds ``shuffle``: the evaluation passes the run's ablation seed and the video's identity, so every
    video gets its own order and a rerun the same one.
    """
    import random

    import torch

    if ablation is None:
        return sampled
    frames, count = sampled.frames, len(sampled.frames)
    if ablation == "blank":
        return dataclasses.replace(sampled, frames=torch.zeros_like(frames))
    if ablation == "reverse":
        order = list(range(count))[::-1]
    elif ablation == "shuffle":
        order, rng = list(range(count)), random.Random(seed)
        while count > 1 and order == sorted(order):
            rng.shuffle(order)
    elif ablation == "single-frame":
        order = [count // 2] * count
    else:
        raise ValueError(f"unknown video ablation {ablation!r}; choose one of {', '.join(VIDEO_ABLATIONS)}")
    return dataclasses.replace(sampled, frames=frames[order].contiguous())


def prepare_video(
    root: str | Path,
    identity: str,
    source: str | Path | bytes,
    sampling: dict[str, Any],
    encoding: dict[str, str] | None,
    ablation: str | None = None,
    ablation_seed: str = "0",
) -> PreparedVideo:
    """In a decode worker: the video's frames (`stored_video`), encoded with ``encoding`` if given
    (`Backend.media_encoding`), else only made sure to be in the store.

    Args:
        root (`str` or `Path`): the frame store's folder.
        identity (`str`): the video's identity (a row's `video_id`, else `video_identity`).
        source (`str`, `Path` or `bytes`): the video, decoded only when the store has no entry.
        sampling (`dict`): the effective `VideoSampling.to_dict()`.
        encoding (`dict`, *optional*): `sampled_video_parts` keyword arguments; `None` for a local engine.
        ablation (`str`, *optional*): encode the frames changed by this video ablation (`ablated`); the store keeps
            the real ones.
        ablation_seed (`str`, defaults to ``"0"``): seeds the ``shuffle`` ablation.
    """
    from safevid.backends.media import sampled_video_parts

    # The worker is already bounded by the pool's timeout: decode in it, not in a nested worker.
    sampled, decoded = stored_video(root, identity, source, {**sampling, "timeout_s": None})
    if encoding is None:
        return PreparedVideo(sampled.metadata(), None, decoded)
    parts = sampled_video_parts(ablated(sampled, ablation, ablation_seed), **encoding)
    return PreparedVideo(sampled.metadata(), parts, decoded)
