"""Batch prepared video preference rows for `DPOTrainer`: token ids plus each family's video tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers.data.data_collator import DataCollatorMixin

from safevid.families import get_family, video_processor_inputs
from safevid.paths import default_cache_dir
from safevid.training.data import CachedVideo
from safevid.video.frame_store import FrameStore


@dataclass
class VideoPreferenceCollator(DataCollatorMixin):
    """Collate rows of `prepare_preference_dataset` into the batch layout `DPOTrainer` expects.

    The batch holds `2 * B` sequences, the B prompts followed by their chosen completions, then the same prompts
    followed by their rejected completions (TRL's layout), right-padded, with `completion_mask`. The cached frames
    of each row go through the processor's video pipeline once (resize, normalise, patchify) and the resulting
    tensors are repeated for the two halves, so both halves see identical pixels. The frames are memory-mapped from
    the frame store by each row's `frame_key` (rows sharing a video share one entry). Which tensors travel depends on
    the family (`safevid.families`): `pixel_values_videos` and `video_grid_thw` for Qwen-VL models, plus
    `second_per_grid_ts` computed from the sampled fps for Qwen2.5-VL, `mm_token_type_ids` where the processor
    makes them, `pixel_values_videos` alone for LLaVA-NeXT-Video and LLaVA-OneVision.

    Every row has a video, so every batch on every rank runs the vision tower (the ZeRO-3 requirement).

    Args:
        processor:
            The model's transformers processor.
        frame_store (`FrameStore`, *optional*):
            Where the rows' frames are: `safevid.training.data.frame_store_for(args)`. Defaults to the store of the
            default `cache_dir`.
        return_tensors (`str`, defaults to `"pt"`).
    """

    processor: Any
    frame_store: FrameStore | None = None
    return_tensors: str = "pt"

    def __post_init__(self) -> None:
        if self.frame_store is None:
            self.frame_store = FrameStore(default_cache_dir() / "frames")
        self.family = get_family(self.processor)
        tokenizer = self.processor.tokenizer
        self.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.family.video_token)

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        from trl.trainer.utils import pad

        videos = [CachedVideo.from_row(example, self.frame_store) for example in examples]
        # The placeholder alone is enough text: the processor expands it and computes the video tensors
        # (and Qwen2.5-VL's `second_per_grid_ts` from each video's metadata).
        vision = self.processor(
            text=[self.family.video_token] * len(videos),
            padding=True,
            return_tensors="pt",
            **video_processor_inputs(self.processor, videos),
        )
        made = (vision["input_ids"] == self.video_token_id).sum(dim=1).tolist()
        for example, count in zip(examples, made, strict=True):
            if count != example["num_vision_tokens"]:
                raise ValueError(
                    f"The cached prompt of a row holds {example['num_vision_tokens']} video tokens but its frames now "
                    f"give {count}: the frame cache no longer matches the processor. Delete the cache "
                    "(`cache_dir`) and rerun."
                )
        sequences, masks = [], []
        for half in ("chosen_ids", "rejected_ids"):
            for example in examples:
                sequences.append(torch.tensor(example["prompt_ids"] + example[half]))
                masks.append(torch.tensor([0] * len(example["prompt_ids"]) + [1] * len(example[half])))
        input_ids = pad(sequences, padding_value=self.pad_token_id, padding_side="right")
        output: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": pad(
                [torch.ones_like(s) for s in sequences], padding_value=0, padding_side="right"
            ),
            "completion_mask": pad(masks, padding_value=0, padding_side="right"),
        }
        for name in self.family.video_input_names:
            if name in vision:
                output[name] = torch.cat([vision[name], vision[name]])
        if "mm_token_type_ids" in vision:
            # 2 marks video tokens (1 would be image tokens), as the processor itself labels them.
            output["mm_token_type_ids"] = (input_ids == self.video_token_id).long() * 2
        for name in ("ref_chosen_logps", "ref_rejected_logps"):
            if name in examples[0]:
                output[name] = torch.tensor([example[name] for example in examples])
        return output
