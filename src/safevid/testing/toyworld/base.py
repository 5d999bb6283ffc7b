"""The unsafe base of the toy world: a tiny random-init video LMM fine-tuned to comply with every query.

At real scale the base is a released video LMM that perceives video (pre-training taught it) and helps with
whatever it is asked. Here it is made from a tiny checkpoint of a real architecture (`safevid.testing.tiny_models`)
by up to two supervised fine-tunes:

1. perception, when the world asks for it (`perception` in the world file): captions of freshly rendered clips of
   every colour, shape and motion of the world's vocabulary ("A red square moving right."), as pre-training gives
   a real model its perception; the clips are not the world's and the captions know nothing of its taxonomy;
2. compliance, on the toy world's training clips: (clip, query) -> the world's compliant answer, for every clip
   and query of every subcategory (with the captioning rows, if any, mixed in: the base keeps its perception).

Both go through the project's own training path: `prepare_preference_dataset` (frames decoded once
into the frame store, the chat template and the video placeholder expanded by the model's processor) and
`VideoPreferenceCollator` (the family's video tensors). A plain causal-LM loss on the completion tokens of the
batch's first half (prompt + answer) is the whole objective, so a small loop suffices: TRL's `SFTTrainer` has no
video path, and the collator already builds what the model takes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from safevid.testing.toyworld.world import ToyWorld

# One setting for every seed: the demo and the tests use it unchanged.
SFT_EPOCHS = 2
SFT_LEARNING_RATE = 3e-3
SFT_BATCH_SIZE = 8
PERCEPTION_PROMPT = "Describe the video."


def sft_rows(world: ToyWorld, clips: Path) -> list[dict[str, Any]]:
    """One row per (training clip, query): the prompt, and the compliant answer as the completion."""
    answer = world.data["responses"]["comply"]
    queries = [q for phrases in world.data["queries"].values() for q in phrases]
    return [
        _row(world, f"{path.stem}-{number}", path.name, query, answer)
        for path in sorted(clips.glob("*.mp4"))
        for number, query in enumerate(queries)
    ]


def perception_rows(world: ToyWorld, clips: Path, seed: int) -> list[dict[str, Any]]:
    """Render the world's perception clips into `clips`; one captioning row per clip."""
    settings = world.data["perception"]
    captions, _ = world.render_scenes(world.perception_scenes(seed, settings["clips"]), clips)
    return [
        _row(world, Path(name).stem, name, PERCEPTION_PROMPT, caption)
        for name, caption in sorted(captions.items())
    ]


def _row(world: ToyWorld, row_id: str, video: str, prompt: str, answer: str) -> dict[str, Any]:
    """A preference-shaped row whose chosen reply is the completion (the collator's input format)."""
    import json

    sampling = json.dumps(world.sampling, sort_keys=True)
    # The video is relative to the clips folder, where the resolver looks.
    return {
        "id": row_id,
        "video": video,
        "prompt": prompt,
        "chosen": answer,
        "rejected": answer,
        "sampling": sampling,
    }


def make_unsafe_base(
    world: ToyWorld,
    clips: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    work_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Fine-tune the world's tiny `target_family` checkpoint (weights seeded by `seed`) into the unsafe base."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from safevid.testing.tiny_models import build_tiny_model
    from safevid.training import VideoDPOConfig
    from safevid.training.collator import VideoPreferenceCollator
    from safevid.training.data import frame_store_for, prepare_preference_dataset
    from safevid.video.references import VideoReferences

    output = Path(output_dir)
    work = Path(work_dir) if work_dir is not None else output.parent / f".{output.name}-sft"
    checkpoint = build_tiny_model(world.data["target_family"], seed=seed)
    processor = AutoProcessor.from_pretrained(checkpoint)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.float32)
    args = VideoDPOConfig(
        output_dir=str(work), cache_dir=str(work / "cache"), use_cpu=True, bf16=False, report_to="none"
    )
    collator = VideoPreferenceCollator(processor, frame_store_for(args))
    generator = torch.Generator().manual_seed(seed)

    def prepare(rows: list[dict[str, Any]], folder: Path, split: str) -> list[Any]:
        references = VideoReferences(video_root=str(folder))
        dataset = Dataset.from_list(rows)
        prepared, _ = prepare_preference_dataset(dataset, processor, args, split=split, references=references)
        return list(prepared)

    def fine_tune(examples: list[Any], epochs: int, learning_rate: float) -> None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(examples), generator=generator).tolist()
            for start in range(0, len(order), SFT_BATCH_SIZE):
                batch = collator([examples[i] for i in order[start : start + SFT_BATCH_SIZE]])
                loss = completion_loss(model, batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()

    compliance = prepare(sft_rows(world, Path(clips)), Path(clips), "sft")
    if "perception" in world.data:
        settings = world.data["perception"]
        folder = work / "perception-clips"
        perception = prepare(perception_rows(world, folder, seed), folder, "perception")
        fine_tune(perception, settings["epochs"], settings["learning_rate"])
        # The compliance fine-tune keeps captioning too, as a released model keeps its perception.
        compliance += perception
    fine_tune(compliance, SFT_EPOCHS, SFT_LEARNING_RATE)
    model.eval()
    model.save_pretrained(output)
    processor.save_pretrained(output)
    return output


def completion_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Causal-LM loss on the completion tokens of the batch's first half (prompt + chosen).

    The collator stacks chosen then rejected sequences, and repeats each video tensor for the two halves
    (`torch.cat([v, v])`), so the first half of every tensor is exactly the chosen sequences' input.
    """
    import torch.nn.functional as F

    half = {name: value[: len(value) // 2] for name, value in batch.items() if hasattr(value, "shape")}
    mask = half.pop("completion_mask")
    logits = model(**half).logits
    targets = half["input_ids"][:, 1:]
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")
    weights = mask[:, 1:].float()
    return (losses * weights).sum() / weights.sum()
