"""The model card of a video-DPO checkpoint: base model, data, hyperparameters, sampling, results to come.

The card never holds a token or a local path of the machine that trained: hyperparameters are picked field by
field, not dumped. The results section is a marked block that ``safevid eval --model-card`` replaces
(`safevid.evaluation.card_results`).
"""

from __future__ import annotations

import json
from typing import Any

from safevid.markdown import RESULTS_BEGIN, RESULTS_END, inline_code, inline_text, table_cell

RESULTS_PLACEHOLDER = (
    f"{RESULTS_BEGIN}\n_Not evaluated yet. A SafeVidBench evaluation of this checkpoint replaces this block._\n"
    f"{RESULTS_END}"
)

# Training arguments worth reporting, in the order they are shown.
_HYPERPARAMETERS = (
    "beta",
    "loss_type",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "precompute_ref_log_probs",
    "gradient_checkpointing",
    "bf16",
    "seed",
)


def build_model_card(
    *,
    model_name: str,
    base_model: str | None,
    dataset_name: str | None,
    args: Any,
    world_size: int,
    samplings: list[dict[str, Any]],
    peft: dict[str, Any] | None,
    tags: list[str] | None = None,
) -> str:
    """Render the README.md of a trained checkpoint.

    Args:
        model_name (`str`): the repository name.
        base_model (`str`, *optional*): Hub id of the model trained from (omitted when it was a local folder).
        dataset_name (`str`, *optional*): Hub id or name of the preference data.
        args (`VideoDPOConfig`): the training arguments.
        world_size (`int`): number of training processes (for the effective batch size).
        samplings (`list[dict]`): the `VideoSampling` configurations the kept rows were decoded with.
        peft (`dict`, *optional*): LoRA settings when an adapter was trained.
        tags (`list[str]`, *optional*): extra Hub tags.
    """
    from huggingface_hub import ModelCardData

    data = ModelCardData(
        base_model=base_model,
        datasets=[dataset_name] if dataset_name else None,
        library_name="peft" if peft else "transformers",
        pipeline_tag="video-text-to-text",
        tags=sorted({"safevid", "video", "dpo", "trl", "safety", *(tags or [])}),
    )
    rows = [(name, getattr(args, name)) for name in _HYPERPARAMETERS if hasattr(args, name)]
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size
    rows.append(("effective batch size (pairs)", effective))
    rows.append(("world size", world_size))
    table = "\n".join(
        f"| {inline_code(name)} | {table_cell(inline_code(_show(value)))} |" for name, value in rows
    )
    sections = [
        f"---\n{data.to_yaml()}\n---",
        f"# {inline_text(model_name)}",
        f"{inline_text(base_model or 'A video LMM')} aligned for video safety with Direct Preference Optimization "
        f"on {inline_code(dataset_name) if dataset_name else 'video preference data'}, trained with "
        "[safevid](https://github.com/safevid/safevid) on TRL's `DPOTrainer`.",
        "## Training hyperparameters",
        f"| parameter | value |\n|---|---|\n{table}",
    ]
    if peft:
        lora = "\n".join(
            f"| {inline_code(name)} | {table_cell(inline_code(_show(value)))} |"
            for name, value in peft.items()
        )
        sections.append(f"### LoRA\n\n| parameter | value |\n|---|---|\n{lora}")
    sampling_text = "\n\n".join(f"```json\n{json.dumps(s, indent=2, sort_keys=True)}\n```" for s in samplings)
    sections += [
        "## Video sampling",
        "Frames were sampled with the `VideoSampling` below (`safevid.video`); sample the same way at "
        "inference and evaluation.\n\n" + (sampling_text or "_not recorded_"),
        "## Results",
        RESULTS_PLACEHOLDER,
    ]
    return "\n\n".join(sections) + "\n"


def _show(value: Any) -> str:
    if isinstance(value, (set, tuple)):
        value = sorted(value) if isinstance(value, set) else list(value)
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
