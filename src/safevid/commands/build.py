"""Build a SafeVid preference dataset (videos → descriptions → queries and responses → Hub dataset).

Examples:

    safevid build --config hub/datasets/safevid-350k/config_demo.yaml          # one machine, all stages
    safevid build --config config_350k.yaml --tasks 16 --workers 4             # 16 tasks, 4 at a time, here
    safevid build --config config_350k.yaml --executor slurm                   # a job array + a publish job
    safevid build --config config_350k.yaml --shard 3 --num-shards 64          # one task of 64, by hand
    safevid build --config config_350k.yaml --num-shards 64 --stage publish    # merge the 64 shards
    safevid build --config config_350k.yaml --stage publish --push-to-hub my-org/safevid-350k

The worker stages run as datatrove tasks (`engine:` in the config, or --executor/--tasks/--workers): a
relaunch runs only the tasks not complete. A task whose records failed past their retries fails, and
the command exits 1 naming it. A killed build resumes where it stopped when rerun with the same config. A changed config is refused
(use --output-dir or --new-output). The Hub token is read from the environment (HF_TOKEN) or the
huggingface_hub login, never from a flag.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from safevid.pipeline.stages import STAGE_NAMES

    parser.add_argument("--config", required=True, help="Build config YAML (see hub/datasets/safevid-350k/).")
    parser.add_argument("--output-dir", help="Dataset folder (overrides `output_dir`; default safevid-350k).")
    parser.add_argument("--work-dir", help="Build state folder (overrides `work_dir`).")
    parser.add_argument(
        "--executor",
        choices=("local", "slurm", "ray"),
        help="Where the tasks run (overrides `engine.executor`).",
    )
    parser.add_argument("--tasks", type=int, help="Tasks (shards) of the build (overrides `engine.tasks`).")
    parser.add_argument("--workers", type=int, help="Tasks running at once (overrides `engine.workers`).")
    parser.add_argument(
        "--shard", type=int, help="Run only this shard (0-based), here, without the engine: what a task runs."
    )
    parser.add_argument("--num-shards", type=int, help="Number of shards, with --shard or --stage publish.")
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

    configure_logging()
    overrides = {k: v for k, v in (("output_dir", args.output_dir), ("work_dir", args.work_dir),
                                   ("engine.executor", args.executor), ("engine.tasks", args.tasks),
                                   ("engine.workers", args.workers)) if v is not None}  # fmt: skip
    by_hand = args.shard is not None or args.num_shards is not None
    stages = tuple(args.stage) if args.stage else None
    try:
        config = load_build_config(args.config, overrides)
        if by_hand:
            result = run_build(config, shard=args.shard or 0, num_shards=args.num_shards or 1, stages=stages,
                               new_output=args.new_output, progress=args.progress)  # fmt: skip
        else:
            result = _launch(config, stages, args)
            if result is None:
                return 0
    except (ConfigError, ConfigChangedError, RuntimeError, ValueError, FileNotFoundError) as e:
        from safevid.pipeline.engine import BuildTasksFailedError
        from safevid.pipeline.run import IncompleteBuildError

        print(f"safevid build: error: {e}")
        return 1 if isinstance(e, (BuildTasksFailedError, IncompleteBuildError)) else 2
    _print_stages(result.manifest)
    if result.publish is not None:
        print(f"Published {json.dumps(result.publish.rows)} to {result.output_dir}")
        print(f'Load it with: load_dataset("{result.output_dir}")')
    elif not result.complete:
        from safevid.pipeline.run import failed_records

        shard = f"shard {args.shard or 0} of {args.num_shards or 1}"
        print(f"safevid build: error: {shard}: {failed_records(result.store_path)}; rerun to retry them")
        return 1
    elif (args.num_shards or 1) > 1:
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


def _launch(config: Any, stages: tuple[str, ...] | None, args: argparse.Namespace) -> Any:
    """Run the build on the configured executor; the publish result, or None when the jobs were submitted."""
    from safevid.pipeline.engine import launch
    from safevid.pipeline.stages import PUBLISH

    engine = config.engine
    print(f"Running {engine.tasks} task(s) on the {engine.executor} executor, {engine.workers} at a time")
    launched = launch(config, stages=stages, new_output=args.new_output, progress=args.progress)
    if engine.executor == "slurm" and launched.publish is None:
        if args.push_to_hub:
            print("Push once the publish job is done: --stage publish --push-to-hub REPO_ID")
        print(f"Submitted {len(launched.ran)} task(s) as Slurm job(s) {', '.join(launched.submitted) or '-'}; "
              f"logs and launch scripts in {launched.logging_dir}. Rerun the same command to resubmit only "
              "the tasks that did not complete.")  # fmt: skip
        return None
    if stages is None or set(stages) - {PUBLISH}:
        print(f"{len(launched.ran)} task(s) ran, {engine.tasks - len(launched.ran)} were complete already")
    if launched.publish is None:
        print("All tasks complete; publish with --stage publish.")
    return launched.publish


def _print_stages(manifest: dict[str, Any]) -> None:
    from safevid.pipeline.stages import worker_stage_names

    stages_summary = manifest.get("stages", {})
    for stage in worker_stage_names():
        if stage not in stages_summary:
            continue
        counts = stages_summary[stage]
        dropped = ", ".join(f"{k}={v}" for k, v in counts["dropped"].items()) or "-"
        errors = "".join(f" ({k}={v})" for k, v in counts["errors"].items())
        print(
            f"{stage:>10}: in {counts['in']:>7}  ok {counts['ok']:>7}  errors {counts['errors_total']:>5}{errors}  "
            f"dropped {dropped}"
        )
