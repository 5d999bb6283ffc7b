"""Build SafeVidBench: held-out videos through the build's own stages → a balanced benchmark folder (→ Hub).

Examples:

    safevid build-bench --config hub/datasets/safevidbench/config_demo.yaml
    safevid build-bench --config my_bench.yaml --output-dir safevidbench --push-to-hub my-org/safevidbench

The videos of the training sets named under ``exclude`` in the config are held out by content hash. A killed
build resumes when rerun with the same config. The Hub token is read from the environment (HF_TOKEN) or the
huggingface_hub login, never from a flag.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, help="SafeVidBench config (see hub/datasets/safevidbench/)."
    )
    parser.add_argument(
        "--output-dir", help="Benchmark folder (overrides `output_dir`; default safevidbench)."
    )
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="After building, push to this dataset repo.")
    parser.add_argument("--progress", action="store_true", help="Show progress bars of generation batches.")


def run(args: argparse.Namespace) -> int:
    from safevid.log import configure_logging
    from safevid.pipeline.benchmark import build_benchmark, load_benchmark_config, push_benchmark

    configure_logging()
    try:
        config = load_benchmark_config(args.config, {"output_dir": args.output_dir})
        result = build_benchmark(config, progress=args.progress)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"safevid build-bench: error: {e}")
        return 2
    print(
        f"SafeVidBench: {json.dumps(result.rows)} items in {result.output_dir}; "
        f"{result.excluded_videos} training video(s) held out; missing cells: {len(result.missing)}"
    )
    print(f'Load it with: load_dataset("{result.output_dir}", split="test")')
    if args.push_to_hub:
        pushed = push_benchmark(result.output_dir, args.push_to_hub, private=config.private)
        print(
            f"Pushed to {args.push_to_hub}: {len(pushed.uploaded)} uploaded, {len(pushed.skipped)} already there"
        )
    return 0
