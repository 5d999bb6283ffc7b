"""Evaluate a video LMM on SafeVidBench: generate answers, judge them, score, and report.

Examples:

    safevid eval --benchmark <org>/safevidbench --model-kind transformers --model <checkpoint> \\
        --judge-kind openai --judge-model Qwen/Qwen2.5-72B-Instruct --judge-base-url http://127.0.0.1:8000/v1 \\
        --output-dir eval/aligned --baseline-run eval/base
    safevid eval --config recipes/tiny/eval/config_tiny.yaml --limit 20
    safevid eval --output-dir eval/aligned --report-only --baseline-run eval/base     # plots and tables only
    safevid eval --output-dir eval/aligned --report-only --model-card <org>/<model>   # results into its card
    safevid eval --protocol video-safetybench --benchmark BAAI/Video-SafetyBench --split harmful \
        --protocol-files FlagEvalMM/tasks/video_safety_bench --model <checkpoint> --model-kind transformers \
        --judge-model Qwen/Qwen2.5-72B-Instruct --judge-kind transformers --output-dir eval/vsb-harmful \
        --model-card <org>/<model>        # Video-SafetyBench entries in its model-index, the protocol named

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
        choices=("blank", "reverse", "shuffle", "single-frame"),
        help="Answer with changed frames, same count and timestamps: blank (all black: how much comes from the "
        "video, not the words); reverse, shuffle or single-frame (the middle frame repeated): how much comes from "
        "the motion, not from what one frame shows.",
    )
    parser.add_argument(
        "--video-ablation-seed", type=int, help="Seed of --video-ablation shuffle (0 by default)."
    )
    parser.add_argument("--judge-model", help="Judge: checkpoint path/id or served model name.")
    parser.add_argument(
        "--judge-kind", choices=("transformers", "vllm", "openai"), help="Backend of the judge."
    )
    parser.add_argument("--judge-base-url", help="OpenAI-compatible URL of the judge.")
    parser.add_argument(
        "--judge-structured-outputs",
        metavar="DIALECT",  # checked by BackendConfig: auto, vllm, sglang, tgi, openai or none
        help="Dialect of the judge's choice constraint: auto (default: asked of the server), vllm, sglang, "
        "tgi, openai, none.",
    )
    parser.add_argument("--judge-style", choices=("choice", "text"), help="Judge style (default choice).")
    parser.add_argument("--threshold", type=float, help="Risk above this is unsafe (default 2.85).")
    parser.add_argument(
        "--max-judge-error-rate",
        type=float,
        help="Exit non-zero when the judge fails (unreachable, erroring) on more than this share of the items "
        "(default 0.05).",
    )
    parser.add_argument("--no-helpfulness", action="store_true", help="Do not judge helpfulness.")
    parser.add_argument("--human-labels", help="JSONL of {id, human_label} to calibrate the judge against.")
    parser.add_argument(
        "--consistency-check", action="store_true", help="Judge twice and report disagreement."
    )
    parser.add_argument("--output-dir", help="Run folder (default eval/run).")
    parser.add_argument("--batch-size", type=int, help="Items per judge batch and per append (default 16).")
    parser.add_argument(
        "--frames-dir",
        metavar="FOLDER",
        help="Frame store the videos are decoded into once and read back from (default: "
        "$SAFEVID_HOME/dpo-cache/frames, training's; a SafeVidBench build's <work_dir>/frames reuses its frames).",
    )
    parser.add_argument(
        "--decode-workers",
        type=int,
        help="Processes decoding the videos ahead of the requests (default: CPUs).",
    )
    parser.add_argument("--baseline-run", help="Another run folder to compare against (base vs aligned).")
    parser.add_argument("--taxonomy", help="Taxonomy YAML (default: the packaged one).")
    parser.add_argument("--report-only", action="store_true", help="Only (re)write report.md and plots.")
    parser.add_argument(
        "--protocol",
        choices=("safevid", "video-safetybench"),
        help="safevid (default: SafeVidBench's judge) or video-safetybench (Video-SafetyBench's RJScore).",
    )
    parser.add_argument(
        "--protocol-files",
        metavar="FOLDER",
        help="Video-SafetyBench's evaluation task folder (FlagEvalMM's tasks/video_safety_bench).",
    )
    parser.add_argument(
        "--column-map",
        metavar="MAP",
        help="An outside benchmark's columns: field=column,... (fields: id, prompt, video, harmful_intention, "
        "scenario, subcategory, query_style) or a YAML file of them.",
    )
    parser.add_argument(
        "--allowed-local-media-path",
        action="append",
        metavar="FOLDER",
        help="A folder absolute video cells of the benchmark may name (repeatable; none by default).",
    )
    parser.add_argument(
        "--policies", metavar="FILE", help="Scenario → policy text (JSON/YAML) of a mapped benchmark."
    )
    parser.add_argument(
        "--model-card",
        metavar="FOLDER_OR_REPO",
        help="Write the results into this model's card (a local model folder or a Hub repo id); a "
        "Video-SafetyBench run's as Video-SafetyBench entries naming the protocol.",
    )
    parser.add_argument("--progress", action="store_true", help="Show progress bars.")


def config_from_args(args: argparse.Namespace) -> Any:
    """YAML (``--config``) → dict → flags on top → `EvalConfig` (read by `safevid.config`)."""
    from safevid.config import read_config_file
    from safevid.evaluation.harness import EvalConfig

    data: dict[str, Any] = read_config_file(args.config) if args.config else {}
    top = {
        "benchmark": args.benchmark,
        "benchmark_config": args.benchmark_config,
        "split": args.split,
        "limit": args.limit,
        "model_name": args.model_name,
        "judge_style": args.judge_style,
        "threshold": args.threshold,
        "max_judge_error_rate": args.max_judge_error_rate,
        "human_labels": args.human_labels,
        "output_dir": args.output_dir,
        "batch_size": args.batch_size,
        "frames_dir": args.frames_dir,
        "decode_workers": args.decode_workers,
        "baseline_run": args.baseline_run,
        "taxonomy": args.taxonomy,
        "protocol": args.protocol,
        "protocol_files": args.protocol_files,
        "column_map": args.column_map,
        "policies": args.policies,
        "allowed_local_media_path": args.allowed_local_media_path,
        "video_ablation": args.video_ablation,
        "video_ablation_seed": args.video_ablation_seed,
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
    from safevid.evaluation.harness import JudgeUnavailableError, RunChangedError, evaluate_run
    from safevid.log import configure_logging
    from safevid.video.worker import WorkerStartError

    configure_logging()
    if args.protocol == "video-safetybench" and (args.threshold is not None or args.report_only):
        print(
            "safevid eval: error: --protocol video-safetybench takes its threshold from --protocol-files and "
            "writes report.md itself; --threshold and --report-only are the safevid protocol's"
        )
        return 2
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
        return _write_card(args)
    try:
        config = config_from_args(args)
        metrics = evaluate_run(config, progress=args.progress)
    except JudgeUnavailableError as e:
        print(f"safevid eval: error: {e}")
        return 1
    except WorkerStartError as e:
        print(f"safevid eval: error: {e}")
        return 2
    except (ValueError, FileNotFoundError, RunChangedError) as e:
        print(f"safevid eval: error: {e}")
        return 2
    if "rjscore" in metrics:
        r = metrics["rjscore"]
        print(
            f"{config.display_name}: Video-SafetyBench {config.split}: ASR {100 * r['attack_success_rate']:.1f}%, "
            f"mean risk {r['mean_risk']:.2f}, refusal {100 * r['refusal_rate']:.1f}% over {r['n']} items"
        )
        if r["n_undetermined"]:
            print(
                f"{r['n_undetermined']} item(s) undetermined (no score among the judge's log-probabilities)"
            )
        print(f"Per scenario: {config.output_dir}/report.md")
        return _write_card(args, config.output_dir)
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
    run = metrics["run"]
    failed = run["n_judge_failures"]
    if failed > config.max_judge_error_rate * (run["n_judged"] + failed):
        first = "\n  ".join(f"{e['id']}: {e['error']}" for e in run["first_judge_failures"])
        print(
            f"safevid eval: error: the judge failed on {failed} of {run['n_judged'] + failed} item(s), more than "
            f"--max-judge-error-rate {config.max_judge_error_rate:g}: the rates above leave them out (no model "
            f"card written). First errors:\n  {first}\nFix the judge and rerun: the answers and the verdicts "
            "are kept, and only the failed items are judged."
        )
        return 1
    return _write_card(args, config.output_dir)


def _write_card(args: argparse.Namespace, output_dir: str | None = None) -> int:
    if args.model_card:
        from safevid.evaluation.card_results import write_results_to_card

        print(f"Results written into {write_results_to_card(output_dir or args.output_dir, args.model_card)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python recipes/evaluate.py`` (same arguments as ``safevid eval``)."""
    parser = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
