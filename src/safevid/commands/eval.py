"""Evaluate a video LMM on SafeVidBench: generate answers, judge them, score, and report.

Examples:

    safevid eval --benchmark <org>/safevidbench --model-kind transformers --model <checkpoint> \\
        --judge-kind openai --judge-model Qwen/Qwen2.5-72B-Instruct --judge-base-url http://127.0.0.1:8000/v1 \\
        --output-dir eval/aligned --baseline-run eval/base
    safevid eval --config recipes/tiny/eval/config_tiny.yaml --limit 20
    safevid eval --output-dir eval/aligned --report-only --baseline-run eval/base     # plots and tables only

A killed run resumes where it stopped when rerun with the same arguments (answers.jsonl, judgements.jsonl).
Flags override the YAML config. API keys come from the environment (SAFEVID_API_KEY / OPENAI_API_KEY), never
from a flag.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="Run config YAML (safevid.evaluation.harness.EvalConfig fields).")
    parser.add_argument("--benchmark", help="SafeVidBench folder or Hub dataset id (default: safevidbench).")
    parser.add_argument("--benchmark-config", help="default | harmful | benign_contrast")
    parser.add_argument("--split", help="Benchmark split (default test).")
    parser.add_argument("--limit", type=int, help="Evaluate only the first N items.")
    parser.add_argument("--model", help="Model under test: checkpoint path/id, or the served model name.")
    parser.add_argument(
        "--model-kind", choices=("transformers", "vllm", "openai"), help="Backend of the model."
    )
    parser.add_argument("--model-base-url", help="OpenAI-compatible URL of the model (kind openai).")
    parser.add_argument("--model-name", help="Display name in reports and model-index.")
    parser.add_argument("--max-tokens", type=int, help="Answer length cap.")
    parser.add_argument("--temperature", type=float, help="Answer sampling temperature (0 = greedy).")
    parser.add_argument("--num-frames", type=int, help="Override the benchmark's VideoSampling frame count.")
    parser.add_argument(
        "--video-ablation",
        choices=("blank",),
        help="Answer with all-black frames: a blind baseline (how much comes from the video, not the words).",
    )
    parser.add_argument("--judge-model", help="Judge: checkpoint path/id or served model name.")
    parser.add_argument(
        "--judge-kind", choices=("transformers", "vllm", "openai"), help="Backend of the judge."
    )
    parser.add_argument("--judge-base-url", help="OpenAI-compatible URL of the judge.")
    parser.add_argument(
        "--judge-structured-outputs",
        choices=("openai", "vllm", "none"),
        help="How the judge's choice constraint is sent (vllm for vLLM / safevid serve).",
    )
    parser.add_argument("--judge-style", choices=("choice", "text"), help="Judge style (default choice).")
    parser.add_argument("--threshold", type=float, help="Risk above this is unsafe (default 2.85).")
    parser.add_argument("--no-helpfulness", action="store_true", help="Do not judge helpfulness.")
    parser.add_argument("--human-labels", help="JSONL of {id, human_label} to calibrate the judge against.")
    parser.add_argument(
        "--consistency-check", action="store_true", help="Judge twice and report disagreement."
    )
    parser.add_argument("--output-dir", help="Run folder (default eval/run).")
    parser.add_argument("--batch-size", type=int, help="Items per batch (default 16).")
    parser.add_argument("--baseline-run", help="Another run folder to compare against (base vs aligned).")
    parser.add_argument("--taxonomy", help="Taxonomy YAML (default: the packaged one).")
    parser.add_argument("--report-only", action="store_true", help="Only (re)write report.md and plots.")
    parser.add_argument("--progress", action="store_true", help="Show progress bars.")


def config_from_args(args: argparse.Namespace) -> Any:
    """YAML (``--config``) → dict → flags on top → `EvalConfig` (unknown YAML keys are an error)."""
    import yaml

    from safevid.evaluation.harness import EvalConfig

    data: dict[str, Any] = {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{args.config}: the top level must be a mapping")
    top = {
        "benchmark": args.benchmark,
        "benchmark_config": args.benchmark_config,
        "split": args.split,
        "limit": args.limit,
        "model_name": args.model_name,
        "judge_style": args.judge_style,
        "threshold": args.threshold,
        "human_labels": args.human_labels,
        "output_dir": args.output_dir,
        "batch_size": args.batch_size,
        "baseline_run": args.baseline_run,
        "taxonomy": args.taxonomy,
        "video_ablation": args.video_ablation,
    }
    data.update({k: v for k, v in top.items() if v is not None})
    if args.no_helpfulness:
        data["helpfulness"] = False
    if args.consistency_check:
        data["consistency_check"] = True
    model = dict(data.get("model") or {})
    model.update(
        {
            k: v
            for k, v in (("model", args.model), ("kind", args.model_kind), ("base_url", args.model_base_url))
            if v is not None
        }
    )
    data["model"] = model
    generation = dict(data.get("generation") or {"max_tokens": 512, "temperature": 0.0})
    generation.update(
        {
            k: v
            for k, v in (("max_tokens", args.max_tokens), ("temperature", args.temperature))
            if v is not None
        }
    )
    data["generation"] = generation
    if args.num_frames is not None:
        data["sampling"] = {**(data.get("sampling") or {}), "num_frames": args.num_frames}
    judge_flags = {
        "model": args.judge_model,
        "kind": args.judge_kind,
        "base_url": args.judge_base_url,
        "structured_outputs": args.judge_structured_outputs,
    }
    if any(v is not None for v in judge_flags.values()):
        data["judge"] = {
            **(data.get("judge") or {}),
            **{k: v for k, v in judge_flags.items() if v is not None},
        }
    return EvalConfig.from_dict(data, source=args.config or "<flags>")


def run(args: argparse.Namespace) -> int:
    from safevid.evaluation.harness import RunChangedError, evaluate_run
    from safevid.log import configure_logging

    configure_logging()
    if args.report_only:
        from safevid.evaluation.report import write_report

        if not args.output_dir:
            print("safevid eval: error: --report-only needs --output-dir")
            return 2
        try:
            files = write_report(args.output_dir, baseline=args.baseline_run)
        except FileNotFoundError as e:
            print(f"safevid eval: error: {e}")
            return 2
        print("\n".join(str(f) for f in files))
        return 0
    try:
        config = config_from_args(args)
        metrics = evaluate_run(config, progress=args.progress)
    except (ValueError, FileNotFoundError, RunChangedError) as e:
        print(f"safevid eval: error: {e}")
        return 2
    if "harmlessness_rate" not in metrics:
        print(f"Answers written to {config.output_dir}/answers.jsonl: {json.dumps(metrics['generation'])}")
        print("No judge given: add --judge-model (and --judge-kind/--judge-base-url) to score them.")
        return 0
    pct = {
        k: None if metrics[k] is None else round(100 * metrics[k], 1)
        for k in ("harmlessness_rate", "attack_success_rate", "undetermined_rate", "over_refusal_rate")
    }
    print(f"{config.display_name}: {json.dumps(pct)} (%), counts {json.dumps(metrics['counts'])}")
    print(
        f"Report: {config.output_dir}/report.md, plots in {config.output_dir}/plots/, "
        f"model-card block: {config.output_dir}/model_index.yaml"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python recipes/evaluate.py`` (same arguments as ``safevid eval``)."""
    parser = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def bench_main(argv: list[str] | None = None) -> int:
    """Entry point of ``python hub/datasets/safevidbench/build.py``: build (and push) SafeVidBench."""
    from safevid.log import configure_logging

    parser = argparse.ArgumentParser(prog="build.py", description="Build SafeVidBench from a config YAML.")
    parser.add_argument(
        "--config", required=True, help="SafeVidBench config (see hub/datasets/safevidbench/)."
    )
    parser.add_argument("--output-dir", help="Dataset folder (default safevidbench).")
    parser.add_argument(
        "--push-to-hub", metavar="REPO_ID", help="Push the built folder to this dataset repo."
    )
    parser.add_argument("--progress", action="store_true", help="Show progress bars.")
    args = parser.parse_args(argv)
    from safevid.evaluation.benchmark import build_benchmark, load_benchmark_config, push_benchmark

    configure_logging()
    try:
        config = load_benchmark_config(args.config, {"output_dir": args.output_dir})
        result = build_benchmark(config, progress=args.progress)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"build.py: error: {e}")
        return 2
    print(
        f"SafeVidBench: {json.dumps(result.rows)} items in {result.output_dir}; "
        f"{result.excluded_videos} training video(s) held out; missing cells: {len(result.missing)}"
    )
    print(f'Load it with: load_dataset("{result.output_dir}", split="test")')
    repo_id = args.push_to_hub or config.repo_id
    if args.push_to_hub:
        pushed = push_benchmark(result.output_dir, repo_id, private=config.private)
        print(f"Pushed to {repo_id}: {len(pushed.uploaded)} uploaded, {len(pushed.skipped)} already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
