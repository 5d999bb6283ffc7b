"""`run_dpo`: everything `recipes/dpo.py` does after parsing its arguments."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safevid.paths import default_cache_dir
from safevid.training.config import ScriptArguments, VideoDPOConfig
from safevid.video.references import VideoReferences


def run_dpo(script_args: ScriptArguments, training_args: VideoDPOConfig, model_args: Any) -> Any:
    """Load the data and the model, train with `VideoDPOTrainer`, save, and push with a card if asked.

    As TRL's and the alignment handbook's scripts do, the train metrics (and eval metrics when an eval split
    is used) are logged and saved (``train_results.json``, ``eval_results.json``, ``all_results.json``), and so
    is the trainer state (``trainer_state.json``), in ``output_dir``.

    Args:
        script_args (`ScriptArguments`): the dataset (Hub id or local folder), its config and splits.
        training_args (`VideoDPOConfig`): the training configuration.
        model_args (`trl.ModelConfig`): the model, its dtype and attention, and the LoRA settings (`use_peft`).

    Returns:
        `VideoDPOTrainer`: the trainer after training.
    """
    check_world_size(os.environ)
    from trl import get_peft_config, get_quantization_config

    from safevid.training.data import load_preference_dataset
    from safevid.training.trainer import VideoDPOTrainer

    if not script_args.dataset_name:
        raise ValueError(
            "Set `dataset_name`: a Hub id such as <org>/SafeVid-350K, or a local SafeVid build folder."
        )
    if not model_args.model_name_or_path:
        raise ValueError("Set `model_name_or_path`: the video LMM to align (Hub id or local folder).")
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    splits = [script_args.dataset_train_split]
    if training_args.eval_strategy != "no":
        splits.append(script_args.dataset_test_split)
    data, config = script_args.dataset_name, script_args.dataset_config
    if script_args.dataset_format != "safevid":
        data, config = str(converted_dataset(script_args, training_args, splits)), "default"
    train = load_preference_dataset(data, config, splits[0])
    evaluation = load_preference_dataset(data, config, splits[1]) if len(splits) > 1 else None
    trainer = VideoDPOTrainer(
        model_args.model_name_or_path,
        video_references=video_references(data, script_args, training_args),
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
        dataset_name=script_args.dataset_name,
    )
    result = trainer.train(resume_from_checkpoint=_resume_point(training_args))
    metrics = {**result.metrics, "train_samples": len(trainer.train_dataset)}
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    if evaluation is not None:
        metrics = {**trainer.evaluate(), "eval_samples": len(trainer.eval_dataset)}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    trainer.save_model(training_args.output_dir)
    trainer.create_model_card()
    trainer.accelerator.print(f"[safevid] model saved to {training_args.output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
        trainer.accelerator.print(f"[safevid] pushed to {trainer.hub_model_id}")
    trainer.end()
    return trainer


# Set by launchers that start every rank themselves (mpirun, Intel MPI): the world size is theirs, not WORLD_SIZE.
_MPI_WORLD = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def check_world_size(environ: Mapping[str, str]) -> None:
    """Refuse a run that got one process where its launcher was asked for several.

    ``accelerate launch --num_processes N`` (N > 1, or ``--num_machines`` > 1) without ``--multi_gpu``, DeepSpeed
    or FSDP — as on a machine without GPUs — falls back to its simple launcher: it sets ``MASTER_ADDR`` and
    ``MASTER_PORT`` for the N processes it was asked for, then starts just one, with no ``WORLD_SIZE``. That run
    would train on one rank for N times the steps asked, silently.

    Raises:
        RuntimeError: naming what was set and how to launch N processes.
    """
    if "MASTER_ADDR" in environ and "WORLD_SIZE" not in environ and not any(k in environ for k in _MPI_WORLD):
        raise RuntimeError(
            f"this process was launched for a distributed run (MASTER_ADDR={environ['MASTER_ADDR']}, "
            f"MASTER_PORT={environ.get('MASTER_PORT', '?')}) but is the only one (no WORLD_SIZE): `accelerate "
            "launch --num_processes N` without --multi_gpu (or a DeepSpeed/FSDP/multi-GPU config) starts one "
            "process. Launch N processes with `accelerate launch --multi_gpu` (GPUs) or `torchrun --nproc_per_node "
            "N` (CPU too), or ask for --num_processes 1."
        )


def video_references(
    data: str, script_args: ScriptArguments, training_args: VideoDPOConfig
) -> VideoReferences:
    """How the run's video cells resolve: inside the dataset's folder or Hub repository, or `video_root`."""
    local = Path(data).expanduser()
    return VideoReferences(
        dataset_dir=str(local) if local.is_dir() else None,
        hub_dataset=None if local.is_dir() else data,
        video_root=script_args.video_root,
        allowed_local_media_path=tuple(script_args.allowed_local_media_path),
        cache_dir=str(_cache_dir(training_args) / "media"),
    )


def converted_dataset(script_args: ScriptArguments, training_args: VideoDPOConfig, splits: list[str]) -> Path:
    """The SafeVid-format copy of an outside-format dataset, converted once (by the main process) and reused.

    The copy is keyed by the source splits' `datasets` fingerprints and the conversion settings, so a changed
    source or column map converts again. Rejected rows are printed with their cause and kept in the copy's
    ``.safevid-conversion/`` folder.
    """
    import dataclasses
    import hashlib
    import json

    from accelerate import PartialState

    from safevid.preferences import convert_preferences, load_source, parse_column_map

    config = None if script_args.dataset_config == "default" else script_args.dataset_config
    loaded = {split: load_source(script_args.dataset_name, config=config, split=split) for split in splits}
    column_map = parse_column_map(script_args.column_map) if script_args.dataset_format == "columns" else None
    references = dataclasses.replace(
        next(iter(loaded.values()))[1],
        video_root=script_args.video_root,
        allowed_local_media_path=tuple(script_args.allowed_local_media_path),
        cache_dir=str(_cache_dir(training_args) / "media"),
    )
    key = json.dumps(
        [script_args.dataset_format, column_map, script_args.max_rejected_fraction, references.video_root,
         references.allowed_local_media_path, {split: ds._fingerprint for split, (ds, _) in loaded.items()}],
        sort_keys=True,
    )  # fmt: skip
    folder = _cache_dir(training_args) / "converted" / hashlib.sha256(key.encode()).hexdigest()[:32]
    state = PartialState()
    with state.main_process_first():
        if state.is_main_process and not folder.exists():
            report = convert_preferences(
                {split: dataset for split, (dataset, _) in loaded.items()},
                script_args.dataset_format,
                folder,
                references=references,
                source_name=script_args.dataset_name,
                column_map=column_map,
                max_rejected_fraction=script_args.max_rejected_fraction,
            )
            state.print(report.format_summary())
        elif state.is_main_process:
            state.print(f"[safevid] using the converted copy {folder} of {script_args.dataset_name}")
    return folder


def _cache_dir(training_args: VideoDPOConfig) -> Path:
    return Path(training_args.cache_dir or default_cache_dir())


def _resume_point(args: VideoDPOConfig) -> str | None:
    """`resume_from_checkpoint` as a path: `true` means the latest checkpoint in `output_dir`."""
    from transformers.trainer_utils import get_last_checkpoint

    value = args.resume_from_checkpoint
    if value is None or str(value).lower() not in ("true", "1", "yes"):
        return value
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last is None:
        raise ValueError(f"resume_from_checkpoint=true but {args.output_dir} holds no checkpoint-* folder.")
    return last
