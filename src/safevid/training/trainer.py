"""`VideoDPOTrainer`: TRL's `DPOTrainer`, taught to read video preference data.

What TRL 1.16 lacks, and what this subclass adds:

- TRL treats a dataset as visual only when it has `image`/`images`; a `video` column is tokenized as text and
  dropped, and its vision collator passes `images=` only. Here `_prepare_dataset` is replaced by
  `safevid.training.data.prepare_preference_dataset` (decode each video once into the frame store, the main
  process first so the other ranks decode nothing; expand the video placeholder with the model's processor, count
  tokens, drop over-long rows), and `VideoPreferenceCollator` reads the frames by key and builds the family's video
  tensors. `DPOTrainer` already forwards every collated key to `model(...)`.
- Because the prepared rows are pre-tokenized (TRL's text path), TRL's own machinery applies unchanged: the
  reference model (the adapter-disabled policy under PEFT, a frozen copy under full training), the losses, and
  `precompute_ref_log_probs`, which TRL refuses for image data. Its cache file is keyed by the prepared split's
  fingerprint (dataset, processor, sampling) and a hash of the reference weights, and lies next to the
  prepared rows in `cache_dir`, so a second run reuses it.
- `_set_signature_columns_if_needed` keeps the frame keys, and `create_model_card` writes safevid's card
  (base model, dataset, hyperparameters, sampling, a results block for the evaluation to fill).

Under DeepSpeed ZeRO-3, every rank must run the vision tower at every forward, or the ranks wait on each other's
parameter gathers forever. Every prepared row has a video (a row without one is an error), so every batch on every
rank calls the tower, for the policy and the reference forwards alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from trl import DPOTrainer

from safevid.families import get_family
from safevid.training.collator import VideoPreferenceCollator
from safevid.training.config import VideoDPOConfig
from safevid.training.data import (
    PREPARED_COLUMNS,
    PreparationReport,
    frame_store_for,
    prepare_preference_dataset,
    require_video_processor,
)
from safevid.video.references import VideoReferences


class VideoDPOTrainer(DPOTrainer):
    """DPO on video preference rows for Qwen2.5-VL, Qwen2-VL, Qwen3-VL, LLaVA-NeXT-Video and LLaVA-OneVision.

    Takes the same arguments as `trl.DPOTrainer`, with a `VideoDPOConfig`, and datasets in SafeVid's `default` or
    `conversational` config (see `safevid.schema`), raw or already prepared.

    Args:
        model (`str` or `PreTrainedModel`):
            A video LMM, or its Hub id / local folder.
        args (`VideoDPOConfig`):
            Training configuration.
        dataset_name (`str`, *optional*):
            Name of the preference data, for the model card.
        video_references (`safevid.video.references.VideoReferences`, *optional*):
            How the datasets' `video` cells are resolved (their folder, `video_root`, allowed local roots).
        **kwargs:
            The other arguments of `trl.DPOTrainer` (`ref_model`, `train_dataset`, `eval_dataset`,
            `processing_class`, `peft_config`, `callbacks`, ...).

    Raises:
        `ValueError`: the model's family or processor cannot take video (the message names the model).
    """

    _tag_names: ClassVar[list[str]] = ["trl", "dpo", "safevid", "video"]

    def __init__(
        self,
        model: Any,
        args: VideoDPOConfig,
        *,
        processing_class: Any = None,
        data_collator: Any = None,
        dataset_name: str | None = None,
        video_references: VideoReferences | None = None,
        **kwargs: Any,
    ):
        if not isinstance(args, VideoDPOConfig):
            raise TypeError(f"VideoDPOTrainer needs a VideoDPOConfig, got {type(args).__name__}.")
        model_id = model if isinstance(model, str) else model.config._name_or_path
        _check_family(model, args)
        if processing_class is None:
            from transformers import AutoProcessor

            revision = (args.model_init_kwargs or {}).get("revision")
            processing_class = AutoProcessor.from_pretrained(
                model_id, revision=revision, trust_remote_code=args.trust_remote_code
            )
        try:
            require_video_processor(processing_class)
        except ValueError as error:
            raise ValueError(f"Model {model_id}: {error}") from error
        self.dataset_name = dataset_name
        self.video_references = video_references
        self.preparation_reports: dict[str, PreparationReport] = {}
        super().__init__(
            model=model,
            args=args,
            processing_class=processing_class,
            data_collator=data_collator or VideoPreferenceCollator(processing_class, frame_store_for(args)),
            **kwargs,
        )

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        prepared, report = prepare_preference_dataset(
            dataset, processing_class, args, split=dataset_name, references=self.video_references
        )
        self.preparation_reports[dataset_name] = report
        return prepared

    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            self._signature_columns = [*PREPARED_COLUMNS, "ref_chosen_logps", "ref_rejected_logps"]

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from accelerate.utils import is_peft_model

        model = model if model is not None else self.model
        folder = Path(resume_from_checkpoint)
        if (
            is_peft_model(model)
            or self.is_fsdp_enabled
            or self.is_deepspeed_enabled
            or not (folder / "config.json").is_file()
        ):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        # transformers 5.24's Trainer loads a full checkpoint's state dict verbatim, but `save_pretrained` writes
        # the original key names of models whose modules were renamed (Qwen2.5-VL: `visual.*`, `model.layers.*`),
        # so nothing would load and training would silently restart from the base weights. `from_pretrained`
        # maps the names; strict loading then proves every weight arrived.
        loaded = type(model).from_pretrained(folder, dtype=model.dtype)
        model.load_state_dict(loaded.state_dict(), strict=True)
        return None

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: Any = None, **_: Any
    ) -> None:
        """Write safevid's model card to `output_dir/README.md` (main process only)."""
        import json

        from accelerate.utils import is_peft_model
        from trl.trainer.utils import get_config_model_id

        from safevid.training.model_card import build_model_card

        if not self.is_world_process_zero():
            return
        base = get_config_model_id(self.model.config)
        peft = None
        if is_peft_model(self.model):
            config = self.model.peft_config["default"]
            peft = {
                name: getattr(config, name)
                for name in (
                    "r",
                    "lora_alpha",
                    "lora_dropout",
                    "target_modules",
                    "modules_to_save",
                    "use_dora",
                )
                if hasattr(config, name)
            }
        samplings = sorted(
            {sampling for report in self.preparation_reports.values() for sampling in report.samplings}
        )
        card = build_model_card(
            model_name=model_name or Path(self.args.output_dir).name,
            base_model=base if base and not Path(base).is_dir() else None,
            dataset_name=dataset_name or self.dataset_name,
            args=self.args,
            world_size=self.args.world_size,
            samplings=[json.loads(s) for s in samplings],
            peft=peft,
            tags=[tags] if isinstance(tags, str) else list(tags or []),
        )
        Path(self.args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.args.output_dir) / "README.md").write_text(card)


def _check_family(model: Any, args: VideoDPOConfig) -> None:
    if isinstance(model, str):
        from transformers import AutoConfig

        revision = (args.model_init_kwargs or {}).get("revision")
        config = AutoConfig.from_pretrained(
            model, revision=revision, trust_remote_code=args.trust_remote_code
        )
    else:
        config = model.config
    try:
        get_family(config)
    except ValueError as error:
        name = model if isinstance(model, str) else config._name_or_path
        raise ValueError(
            f"Model {name}: {error} Video DPO supports these video LMM families; pick a checkpoint of one."
        ) from error
