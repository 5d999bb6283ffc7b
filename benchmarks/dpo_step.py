"""DPO step time and peak memory: stock TRL image DPO vs safevid video DPO, on the same tiny model and frames.

(a) TRL 1.16's `DPOTrainer` with the sampled frames passed as images (its vision collator processes them at
every step); (b) safevid's `VideoDPOTrainer` (frames decoded once into the cache, passed as a video);
(c) the same with precomputed reference log-probs. Each variant runs in its own process (peak RSS is per process),
one after the other, on the same tiny Qwen2.5-VL and the same decoded frames. Prints a Markdown table.

    python benchmarks/dpo_step.py [--steps 12] [--frames 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAMILY = "qwen2_5_vl"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run_variant(variant: str, workdir: Path, steps: int, warmup: int) -> dict:
    import torch

    from safevid.testing.tiny_models import build_tiny_model
    from safevid.training import VideoDPOConfig, VideoDPOTrainer, load_preference_dataset

    torch.set_num_threads(1)
    model = str(build_tiny_model(FAMILY))
    common = {
        "output_dir": str(workdir / f"out-{variant}"),
        "use_cpu": True,
        "bf16": False,
        "max_steps": steps,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-4,
        "logging_steps": steps,
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": 0,
    }
    dataset = load_preference_dataset(_data_folder(workdir), "default")
    if variant == "trl-images":
        from trl import DPOConfig, DPOTrainer

        images = _frames_as_images(dataset)
        rows = [
            {"images": frames, "prompt": [{"role": "user", "content": row["prompt"]}],
             "chosen": [{"role": "assistant", "content": row["chosen"]}],
             "rejected": [{"role": "assistant", "content": row["rejected"]}]}
            for row, frames in zip(dataset, images, strict=True)
        ]  # fmt: skip
        from datasets import Dataset

        trainer = DPOTrainer(
            model, args=DPOConfig(**common, max_length=None), train_dataset=Dataset.from_list(rows)
        )
    else:
        args = VideoDPOConfig(
            **common,
            cache_dir=str(workdir / "cache"),
            precompute_ref_log_probs=variant == "safevid-precomputed",
        )
        trainer = VideoDPOTrainer(model, args=args, train_dataset=dataset)

    clock = step_clock()
    trainer.add_callback(clock)
    before = _rss_mb()
    trainer.train()
    timed = clock.times[warmup:]
    return {
        "variant": variant,
        "step_s": sum(timed) / len(timed),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "train_rss_growth_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before,
    }


def _data_folder(workdir: Path) -> Path:
    # A name of its own: datasets 5.2 caches a local folder with README configs under its name and README alone, so
    # a folder named like an earlier run's would load that run's rows (another frame count).
    return workdir / f"data-{workdir.name}"


def step_clock(synchronize=None):
    """A `TrainerCallback` that records the wall time of every optimizer step in `.times`.

    `synchronize` (e.g. `torch.cuda.synchronize`) is called at both ends, so queued GPU work is counted.
    """
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, *_, **__):
            if synchronize:
                synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            if synchronize:
                synchronize()
            self.times.append(time.perf_counter() - self.start)

    return StepClock()


def _frames_as_images(dataset, overrides: dict | None = None) -> list[list]:
    """The frames safevid trains on (the rows' stored sampling, with `overrides` of its fields), as PIL images for
    TRL's image path."""
    from datasets import Video
    from PIL import Image

    from safevid.video import VideoSampling, sample_video

    out = []
    for row in dataset.cast_column("video", Video(decode=False)):
        sampling = VideoSampling.from_dict(json.loads(row["sampling"])).overridden(overrides or {})
        frames = sample_video(row["video"], sampling).frames
        out.append([Image.fromarray(frame.permute(1, 2, 0).numpy()) for frame in frames])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.variant:
        print(json.dumps(_run_variant(options.variant, Path(options.workdir), options.steps, options.warmup)))
        return 0

    from safevid.testing.demo_data import build_demo_preference_set
    from safevid.video import VideoSampling

    with tempfile.TemporaryDirectory(prefix="safevid-bench-dpo-") as tmp:
        workdir = Path(tmp)
        build_demo_preference_set(
            _data_folder(workdir), num_rows=8, sampling=VideoSampling(num_frames=options.frames)
        )
        results = {}
        # The frame cache and the reference log-probs are built before the timed run, as a real job does once.
        for variant in (
            "trl-images",
            "safevid-video",
            "safevid-precomputed",
            "safevid-video",
            "safevid-precomputed",
        ):
            command = [sys.executable, __file__, "--variant", variant, "--workdir", str(workdir),
                       "--steps", str(options.steps), "--warmup", str(options.warmup)]  # fmt: skip
            proc = subprocess.run(
                command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
            )
            if proc.returncode != 0:
                print(proc.stderr[-4000:], file=sys.stderr)
                return 1
            results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b, c = results["trl-images"], results["safevid-video"], results["safevid-precomputed"]
    print(
        f"Tiny {FAMILY}, {options.frames} frames, 2 pairs per step, mean of {options.steps - options.warmup} steps\n"
    )
    print("| variant | step (s) | peak RSS (MB) | RSS growth in train (MB) |")
    print("|---|---|---|---|")
    for label, r in (
        ("(a) TRL, frames as images", a),
        ("(b) safevid video", b),
        ("(c) safevid + precomputed ref", c),
    ):
        print(f"| {label} | {r['step_s']:.3f} | {r['peak_rss_mb']:.0f} | {r['train_rss_growth_mb']:.0f} |")
    print("\n| ratio | step time | peak RSS | target |")
    print("|---|---|---|---|")
    print(
        f"| (b)/(a) | {b['step_s'] / a['step_s']:.2f} | {b['peak_rss_mb'] / a['peak_rss_mb']:.2f} | ≤ 1.1 |"
    )
    print(
        f"| (c)/(b) | {c['step_s'] / b['step_s']:.2f} | {c['peak_rss_mb'] / b['peak_rss_mb']:.2f} | ≤ 0.8 |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
