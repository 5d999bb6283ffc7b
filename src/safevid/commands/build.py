"""Build a SafeVid preference dataset (videos → descriptions → queries and responses → Hub dataset).

Examples:

    safevid build --config hub/datasets/safevid-350k/config_demo.yaml          # one machine, all stages
    safevid build --config config_350k.yaml --shard 3 --num-shards 64          # one worker of 64
    safevid build --config config_350k.yaml --num-shards 64 --stage publish    # merge the 64 shards
    safevid build --config config_350k.yaml --stage publish --push-to-hub my-org/safevid-350k

A killed build resumes where it stopped when rerun with the same config. A changed config is refused
(use --output-dir or --new-output). The Hub token is read from the environment (HF_TOKEN) or the
huggingface_hub login, never from a flag.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from safevid.pipeline.stages import STAGE_NAMES

    parser.add_argument("--config", required=True, help="Build config YAML (see hub/datasets/safevid-350k/).")
    parser.add_argument("--output-dir", help="Dataset folder (overrides `output_dir`; default safevid-350k).")
    parser.add_argument("--work-dir", help="Build state folder (overrides `work_dir`).")
    parser.add_argument("--shard", type=int, default=0, help="This worker's shard (0-based).")
    parser.add_argument("--num-shards", type=int, default=1, help="Number of shards (workers).")
    parser.add_argument(
        "--stage",
        action="append",
        choices=STAGE_NAMES,
        help="Run only this stage (repeatable). Default: all worker stages, then publish with one shard.",
    )
    parser.add_argument(
        "--new-output", action="store_true", help="On a config change, build into <output_dir>-<fingerprint>."
    )
    parser.add_argument(
        "--push-to-hub", metavar="REPO_ID", help="After publishing, push to this dataset repo."
    )
    parser.add_argument("--progress", action="store_true", help="Show progress bars of generation batches.")


def run(args: argparse.Namespace) -> int:
    from safevid.log import configure_logging
    from safevid.pipeline import ConfigError, load_build_config, run_build
    from safevid.pipeline.manifest import ConfigChangedError
    from safevid.pipeline.publish import push_to_hub
    from safevid.pipeline.stages import worker_stage_names

    configure_logging()
    overrides = {k: v for k, v in (("output_dir", args.output_dir), ("work_dir", args.work_dir)) if v}
    try:
        config = load_build_config(args.config, overrides)
        stages = tuple(args.stage) if args.stage else None
        result = run_build(
            config,
            shard=args.shard,
            num_shards=args.num_shards,
            stages=stages,
            new_output=args.new_output,
            progress=args.progress,
        )
    except (ConfigError, ConfigChangedError, RuntimeError, ValueError, FileNotFoundError) as e:
        print(f"safevid build: error: {e}")
        return 2
    stages_summary = result.manifest.get("stages", {})
    for stage in worker_stage_names():
        if stage not in stages_summary:
            continue
        counts = stages_summary[stage]
        dropped = ", ".join(f"{k}={v}" for k, v in counts["dropped"].items()) or "-"
        print(
            f"{stage:>10}: in {counts['in']:>7}  ok {counts['ok']:>7}  errors {counts['errors_total']:>5}  dropped {dropped}"
        )
    if not result.complete:
        print("Some requests failed and will be retried: rerun the same command.")
    if result.publish is not None:
        print(f"Published {json.dumps(result.publish.rows)} to {result.output_dir}")
        print(f'Load it with: load_dataset("{result.output_dir}")')
    elif args.num_shards > 1:
        print(
            f"Shard {args.shard}/{args.num_shards} done; publish with --num-shards {args.num_shards} --stage publish."
        )
    repo_id = args.push_to_hub
    if repo_id:
        if result.publish is None and not (result.output_dir / "README.md").exists():
            print("safevid build: error: nothing published to push; run the publish stage first")
            return 2
        pushed = push_to_hub(result.output_dir, repo_id, private=config.publish.private,
                             files_per_commit=config.publish.files_per_commit)  # fmt: skip
        print(f"Pushed to {repo_id}: {len(pushed.uploaded)} uploaded, {len(pushed.skipped)} already there, "
              f"{pushed.commits} commit(s)")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python hub/datasets/safevid-350k/build.py`` (same arguments as ``safevid build``)."""
    parser = argparse.ArgumentParser(
        prog="build.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
