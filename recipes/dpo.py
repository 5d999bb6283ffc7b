"""Video DPO of a video LMM on SafeVid preference data, with TRL's `DPOTrainer`.

```bash
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/dpo.py \
    --config recipes/Qwen2.5-VL-7B/dpo/config_lora.yaml
```

Every key of the YAML `--config` is a field of `safevid.training.ScriptArguments`,
`safevid.training.VideoDPOConfig` (TRL's `DPOConfig` plus video sampling) or `trl.ModelConfig`; an unknown key is
an error. Flags on the command line override the YAML. The logic lives in `safevid.training.run_dpo`.
"""

from __future__ import annotations

import sys


def make_parser():
    from trl import ModelConfig, TrlParser

    from safevid.training import ScriptArguments, VideoDPOConfig

    return TrlParser((ScriptArguments, VideoDPOConfig, ModelConfig))


def main(argv: list[str] | None = None) -> int:
    from safevid.preferences import TooManyRejected
    from safevid.training import run_dpo

    script_args, training_args, model_args = make_parser().parse_args_and_config(
        argv, fail_with_unknown_args=True
    )
    try:
        run_dpo(script_args, training_args, model_args)
    except TooManyRejected as stopped:  # its message is the whole report (rows, causes, where they are kept)
        print(stopped, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
