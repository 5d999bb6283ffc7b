"""Video DPO on TRL: configuration, data preparation, collator and trainer.

```python
>>> from safevid.training import VideoDPOConfig, VideoDPOTrainer, load_preference_dataset
>>> dataset = load_preference_dataset("<org>/SafeVid-350K", config="conversational")
>>> args = VideoDPOConfig(output_dir="out", beta=0.1, video_num_frames=8)
>>> trainer = VideoDPOTrainer("Qwen/Qwen2.5-VL-7B-Instruct", args=args, train_dataset=dataset)
>>> trainer.train()
```

Importing this package imports TRL (and torch); the CLI and light modules do not import it.
"""

from __future__ import annotations

from safevid.training.collator import VideoPreferenceCollator
from safevid.training.config import ScriptArguments, VideoDPOConfig
from safevid.training.data import PreparationReport, load_preference_dataset, prepare_preference_dataset
from safevid.training.run import run_dpo
from safevid.training.trainer import VideoDPOTrainer

__all__ = [
    "PreparationReport",
    "ScriptArguments",
    "VideoDPOConfig",
    "VideoDPOTrainer",
    "VideoPreferenceCollator",
    "load_preference_dataset",
    "prepare_preference_dataset",
    "run_dpo",
]
