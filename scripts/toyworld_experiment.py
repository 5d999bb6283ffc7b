"""Short-run study of the toy world's target and recipe (issues 10 and 19): does unsafe base -> video DPO make the
tiny model refuse harmful clips and help on look-alikes, through the video, and (on the temporal world) through
its motion? Rows are built directly here (no pipeline, no stand-ins), with the world's own texts; the training is
the project's `VideoDPOTrainer`. It prints the refusal rate per subcategory of the base and the aligned model on
the real frames and under the `reverse`, `single-frame` and `blank` ablations, and, for a base with a perception
fine-tune, how often its caption of a held-out clip names the right motion.

    python scripts/toyworld_experiment.py --world temporal --seed 0 --work /tmp/twx \\
        [--family qwen2_vl --frames 8 --perception-epochs 6 --lr 3e-3 --epochs 10 --beta 0.1]

The configurations tried and their outcomes are in docs/toyworld.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--world", default="static", help="A packaged world's name or a world YAML.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/twx")
    parser.add_argument("--family", default=None, help="Override the world's target_family.")
    parser.add_argument("--frames", type=int, default=None, help="Override the world's sampled frame count.")
    parser.add_argument(
        "--perception-epochs", type=int, default=None, help="0 drops the perception fine-tune."
    )
    parser.add_argument("--perception-clips", type=int, default=None)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--loss", default="sigmoid,sft")
    args = parser.parse_args()
    from datasets import Dataset

    from safevid.backends import ChatRequest, SamplingParams, make_backend, text_part, video_part
    from safevid.backends.prepared import ablated
    from safevid.scoring import detect_refusal
    from safevid.taxonomy import load_taxonomy
    from safevid.testing.toyworld.base import PERCEPTION_PROMPT, make_unsafe_base
    from safevid.testing.toyworld.world import ToyWorld
    from safevid.training import VideoDPOConfig
    from safevid.training.trainer import VideoDPOTrainer
    from safevid.video import VideoSampling, sample_video
    from safevid.video.references import VideoReferences

    world = ToyWorld.load(args.world)
    data = dict(world.data)
    if args.family:
        data["target_family"] = args.family
    if args.frames:
        data["sampling"] = {**data["sampling"], "num_frames": args.frames}
    if args.perception_epochs == 0:
        data.pop("perception", None)
    elif args.perception_epochs or args.perception_clips:
        defaults = data.get("perception", {"clips": 96, "epochs": 6, "learning_rate": 3e-3})
        data["perception"] = {
            **defaults,
            **({"epochs": args.perception_epochs} if args.perception_epochs else {}),
            **({"clips": args.perception_clips} if args.perception_clips else {}),
        }
    world = dataclasses.replace(world, data=data)
    print(
        f"world {world.data['name']} family {data['target_family']} sampling {data['sampling']} "
        f"perception {data.get('perception')} dpo lr {args.lr} epochs {args.epochs} seed {args.seed}",
        flush=True,
    )
    work = Path(args.work) / f"seed{args.seed}"
    t0 = time.time()
    folders = world.render(work / "clips", args.seed, args.scale)
    truth = {s: json.loads((work / "clips" / f"{s}-truth.json").read_text()) for s in ("train", "eval")}
    base = make_unsafe_base(world, folders["train"], work / "base", seed=args.seed)
    t1 = time.time()
    print(f"render+sft {t1 - t0:.0f}s", flush=True)

    taxonomy = load_taxonomy(world.taxonomy_path)
    harmless = {sub for sub in world.signatures if taxonomy.subcategory(sub).severity == "none"}
    r = world.data["responses"]
    queries = [q for phrases in world.data["queries"].values() for q in phrases]
    sampling_json = json.dumps(world.sampling, sort_keys=True)
    rows = []
    for name, sub in truth["train"].items():
        harmful = sub not in harmless
        for i, q in enumerate(queries):
            rows.append(
                {
                    "id": f"{name}-{i}",
                    "video": name,  # relative to the training clips' folder
                    "prompt": q,
                    "chosen": r["refuse"] if harmful else r["help"],
                    "rejected": r["comply"] if harmful else r["refuse"],
                    "sampling": sampling_json,
                }
            )
    sampling = VideoSampling(**world.sampling)
    videos = {name: sample_video(str(folders["eval"] / name), sampling) for name in truth["eval"]}

    def ask(backend, prompts: list[str], ablation: str | None, max_tokens: int = 12) -> list[tuple[str, str]]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        requests, subs = [], []
        for name, sub in truth["eval"].items():
            video = ablated(videos[name], ablation, f"{args.seed}|{name}")
            for q in prompts:
                requests.append(
                    ChatRequest([{"role": "user", "content": [video_part(video), text_part(q)]}], params)
                )
                subs.append(sub)
        return list(
            zip(subs, (result.text for result in backend.generate(requests, progress=False)), strict=True)
        )

    def evaluate(label: str, model: Path) -> None:
        backend = make_backend(kind="transformers", model=str(model), cache=False, batch_size=16)
        if label == "base" and "perception" in world.data:
            answers = ask(backend, [PERCEPTION_PROMPT], None, max_tokens=24)
            named = {
                key: sum(world.signatures[sub][key] in text for sub, text in answers) / len(answers)
                for key in ("colour", "shape", "motion")
            }
            print(f"base perception: named right {named}  e.g. {answers[0][1]!r}", flush=True)
        for ablation in (None, "reverse", "single-frame", "blank"):
            answers = ask(backend, queries, ablation)
            refused: dict[str, list[bool]] = {}
            for sub, text in answers:
                refused.setdefault(sub, []).append(detect_refusal(text).is_refusal)
            rates = "  ".join(f"{sub} {sum(v) / len(v):.2f}" for sub, v in sorted(refused.items()))
            print(f"{label:8s} {ablation or 'real':12s} refusal {rates}  e.g. {answers[0][1]!r}", flush=True)

    evaluate("base", base)
    t1 = time.time()
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
    trainer = VideoDPOTrainer(
        str(base),
        args=config,
        train_dataset=Dataset.from_list(rows),
        video_references=VideoReferences(video_root=str(folders["train"])),
    )
    trainer.train()
    trainer.save_model(str(work / "aligned"))
    t2 = time.time()
    print(f"dpo {t2 - t1:.0f}s", flush=True)
    evaluate("aligned", work / "aligned")
    print(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
