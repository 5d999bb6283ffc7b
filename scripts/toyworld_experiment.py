"""De-risking experiment for the toy world (issue 10): does SFT -> video DPO make the tiny model refuse harmful
clips, help on benign look-alikes, and only through the video? Rows are built directly here (no pipeline, no
stand-ins), with the world's own texts; the training is the project's `VideoDPOTrainer`.

    python scripts/toyworld_experiment.py --seed 0 --work /tmp/twx [--lr 5e-3 --epochs 3 --beta 0.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/twx")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--loss", default="sigmoid,sft")
    args = parser.parse_args()
    import torch
    from datasets import Dataset

    from safevid.backends import ChatRequest, SamplingParams, make_backend, text_part, video_part
    from safevid.scoring import detect_refusal
    from safevid.testing.toyworld.base import SAMPLING, make_unsafe_base
    from safevid.testing.toyworld.world import ToyWorld
    from safevid.training import VideoDPOConfig
    from safevid.training.trainer import VideoDPOTrainer
    from safevid.video import VideoSampling, sample_video

    work = Path(args.work) / f"seed{args.seed}"
    t0 = time.time()
    world = ToyWorld.load()
    folders = world.render(work / "clips", args.seed, args.scale)
    truth = {s: json.loads((work / "clips" / f"{s}-truth.json").read_text()) for s in ("train", "eval")}
    base = make_unsafe_base(world, folders["train"], work / "base", seed=args.seed)
    t1 = time.time()
    print(f"render+sft {t1 - t0:.0f}s", flush=True)
    from safevid.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(world.taxonomy_path)
    harmless = {sub for sub in world.signatures if taxonomy.subcategory(sub).severity == "none"}
    r = world.data["responses"]
    queries = [q for phrases in world.data["queries"].values() for q in phrases]
    rows = []
    for name, sub in truth["train"].items():
        harmful = sub not in harmless
        for i, q in enumerate(queries):
            rows.append(
                {
                    "id": f"{name}-{i}",
                    "video": str(folders["train"] / name),
                    "prompt": q,
                    "chosen": r["refuse"] if harmful else r["help"],
                    "rejected": r["comply"] if harmful else r["refuse"],
                    "sampling": json.dumps(SAMPLING, sort_keys=True),
                }
            )
    config = VideoDPOConfig(
        output_dir=str(work / "aligned"),
        cache_dir=str(work / "cache"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=8,
        beta=args.beta,
        logging_steps=5,
        save_strategy="no",
        seed=args.seed,
        max_length=2048,
        loss_type=args.loss.split(","),
        gradient_checkpointing=False,
        precompute_ref_log_probs=True,
    )
    trainer = VideoDPOTrainer(str(base), args=config, train_dataset=Dataset.from_list(rows))
    trainer.train()
    trainer.save_model(str(work / "aligned"))
    t2 = time.time()
    print(f"dpo {t2 - t1:.0f}s", flush=True)
    sampling = VideoSampling(**SAMPLING)
    for label, model in (("base", base), ("aligned", work / "aligned")):
        backend = make_backend(kind="transformers", model=str(model), cache=False, batch_size=16)
        for frames in ("real", "blank"):
            requests, subs = [], []
            for name, sub in truth["eval"].items():
                video = sample_video(str(folders["eval"] / name), sampling)
                if frames == "blank":
                    video = dataclasses.replace(video, frames=torch.zeros_like(video.frames))
                for q in queries:
                    params = SamplingParams(max_tokens=12, temperature=0.0)
                    requests.append(
                        ChatRequest([{"role": "user", "content": [video_part(video), text_part(q)]}], params)
                    )
                    subs.append(sub)
            results = backend.generate(requests, progress=False)
            refused = {"harmful": [], "benign": []}
            for sub, result in zip(subs, results, strict=True):
                refused["benign" if sub in harmless else "harmful"].append(
                    detect_refusal(result.text).is_refusal
                )
            rate = {k: sum(v) / len(v) for k, v in refused.items()}
            print(
                f"{label:8s} {frames:5s} refusal harmful {rate['harmful']:.2f} benign {rate['benign']:.2f}  e.g. {results[0].text!r}",
                flush=True,
            )
    print(f"eval {time.time() - t2:.0f}s total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
