"""The build as datatrove tasks: a failed task is reported and retried alone, each task reads only its own
sources, a server that never comes up is named, another task count is refused, and the Slurm executor writes a
requeueing job array with a dependent publish job.

The local-executor tests run the real `safevid build` command (datatrove's `LocalPipelineExecutor`, its
processes, its completion marks); the Slurm test replaces only the scheduler's `sbatch` binary, the boundary
datatrove hands its script to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from test_pipeline_build import read_rows
from test_pipeline_resume import BUILD_SCRIPT, _write_config

from safevid.pipeline import load_build_config

SRC = Path(__file__).resolve().parent.parent / "src"


def _cli(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(BUILD_SCRIPT), "--config", str(config), *args], env=environ,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def _shard_with_videos(config_path: Path, tasks: int) -> int:
    """The first task whose share of the config's test videos is not empty (fixed by the file names)."""
    from safevid.pipeline.context import BuildContext
    from safevid.pipeline.ingest import iter_sources

    config = load_build_config(config_path)
    for shard in range(tasks):
        if list(iter_sources(BuildContext(config, shard, tasks))):
            return shard
    raise AssertionError("no task has a video")


def test_six_tasks_on_two_workers_a_failed_task_is_named_and_the_relaunch_runs_only_it(tmp_path):
    from safevid.pipeline import run_build

    reference = load_build_config(_write_config(tmp_path, "reference"))
    run_build(reference)

    config = _write_config(tmp_path, "engine")
    failing = _shard_with_videos(config, 6)
    # The failing task crashes at its second checkpoint (after its first ingest commit); the five others finish.
    first = _cli(config, "--tasks", "6", "--workers", "2", env={"SAFEVID_BUILD_RAISE_AT": f"{failing}:2"})
    assert first.returncode == 1, first.stdout + first.stderr[-3000:]
    assert f"task {failing}: InjectedFailure: injected failure at checkpoint 2" in first.stdout
    assert "1 of 6 task(s) did not complete" in first.stdout
    runs = tmp_path / "engine" / ".safevid-build" / "engine" / "tasks-00006"
    done = sorted(int(p.name) for p in (runs / "completions").iterdir())
    assert done == sorted(set(range(6)) - {failing})
    assert not (tmp_path / "engine" / "README.md").exists()  # nothing published

    second = _cli(config, "--tasks", "6", "--workers", "2")
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    assert "1 task(s) ran, 5 were complete already" in second.stdout
    assert sorted(int(p.name) for p in (runs / "completions").iterdir()) == list(range(6))
    assert "failed last time" in second.stderr  # the relaunch says which task it retries, and why
    for name in ("default", "conversational"):
        assert read_rows(tmp_path / "engine", name) == read_rows(Path(reference.output_dir), name)


def test_a_task_whose_records_failed_exits_non_zero_naming_them(tmp_path, capsys):
    from safevid.cli import main
    from safevid.testing.server import FaultConfig, FaultInjectingServer

    config = yaml.safe_load(_write_config(tmp_path, "failing").read_text())
    with FaultInjectingServer(latency_only=True, faults=FaultConfig(error_500_rate=1.0)) as server:
        endpoint = {"kind": "openai", "model": server.model_name, "base_url": server.base_url,
                    "max_retries": 0, "structured_outputs": "none"}  # fmt: skip
        config["models"]["describer"] = endpoint
        path = tmp_path / "failing.yaml"
        path.write_text(yaml.safe_dump(config))
        code = main(["build", "--config", str(path), "--tasks", "2", "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert "did not complete" in out
    assert "record(s) failed past their retries (describe describe_status_500 x1)" in out
    assert not (tmp_path / "failing" / "README.md").exists()

    # The same worker run by hand (what a task runs) also exits 1 and names them.
    with FaultInjectingServer(latency_only=True, faults=FaultConfig(error_500_rate=1.0)) as server:
        config["models"]["describer"]["base_url"] = server.base_url
        path.write_text(yaml.safe_dump(config))
        code = main(["build", "--config", str(path), "--shard", "1", "--num-shards", "2"])
    assert code == 1
    assert "shard 1 of 2: 1 record(s) failed past their retries (describe" in capsys.readouterr().out


def test_a_server_that_does_not_come_up_stops_the_task_naming_it(tmp_path, capsys):
    import socket

    from safevid.cli import main

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = yaml.safe_load(_write_config(tmp_path, "down").read_text())
    config["models"]["describer"] = {
        "kind": "openai",
        "model": "m",
        "base_url": f"http://127.0.0.1:{port}/v1",
    }
    config["engine"] = {"server_start_timeout_s": 0.5}
    path = tmp_path / "down.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["build", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert (
        f"ServerNotUpError: the model server at http://127.0.0.1:{port}/v1 (models.describer) did not " in out
    )
    assert "within 0.5 s" in out
    assert "version" not in out.lower()


def test_a_rerun_with_another_task_count_is_refused(tmp_path):
    from safevid.pipeline import run_build
    from safevid.pipeline.run import ShardCountError

    config = load_build_config(_write_config(tmp_path, "count"))
    run_build(config, shard=0, num_shards=2, stages=("ingest",))
    with pytest.raises(ShardCountError, match=r"a build in 2 shards .* not 3: .* --tasks 2"):
        run_build(
            load_build_config(_write_config(tmp_path, "count")), shard=0, num_shards=3, stages=("ingest",)
        )
    assert not list(config.work_path.glob("shard-*-of-00003.sqlite"))


COUNT_OPENS = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    root, config_path, shard, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    opened, listed, stated = set(), set(), set()

    def audit(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)) and str(args[0]).startswith(root):
            opened.add(os.path.relpath(str(args[0]), root))
        elif event in ("os.scandir", "os.listdir") and str(args[0]).startswith(root):
            listed.add(os.path.relpath(str(args[0]), root))

    real_stat = os.stat
    def stat(path, *a, **k):  # stat has no audit event: count it at the os boundary
        if str(path).startswith(root):
            stated.add(os.path.relpath(str(path), root))
        return real_stat(path, *a, **k)
    os.stat = stat
    sys.addaudithook(audit)
    from safevid.pipeline import load_build_config, run_build
    run_build(load_build_config(config_path), shard=shard, num_shards=tasks, stages=("ingest",))
    print(json.dumps({"opened": sorted(opened), "listed": sorted(listed), "stated": sorted(stated)}))
    """
)


def test_no_task_opens_stats_or_lists_another_tasks_sources(tmp_path):
    from safevid.pipeline.context import shard_of
    from safevid.pipeline.ingest import write_plan
    from safevid.testing.plugins import write_test_videos

    inputs = tmp_path / "inputs"
    write_test_videos(inputs / "folder", 6)
    write_test_videos(inputs / "listed", 6)
    (inputs / "list.txt").write_text("".join(f"listed/test_{i:02d}.mp4\n" for i in range(6)))
    config = yaml.safe_load(_write_config(tmp_path, "opens").read_text())
    config["inputs"] = [{"folder": str(inputs / "folder")}, {"list_file": str(inputs / "list.txt")}]
    config["decode_workers"] = 1
    path = tmp_path / "opens.yaml"
    path.write_text(yaml.safe_dump(config))
    tasks = 3
    write_plan(load_build_config(path), tasks)  # what the launcher does once

    seen: dict[str, int] = {}
    for shard in range(tasks):
        done = subprocess.run([sys.executable, "-c", COUNT_OPENS, str(inputs) + os.sep, str(path), str(shard),
                               str(tasks)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        counted = json.loads(done.stdout.strip().splitlines()[-1])
        mine = {
            f"folder/test_{i:02d}.mp4"
            for i in range(6)
            if shard_of(f"file:0:test_{i:02d}.mp4", tasks) == shard
        }
        mine |= {f"listed/test_{i:02d}.mp4" for i in range(6)
                 if shard_of(f"list:1:listed/test_{i:02d}.mp4", tasks) == shard}  # fmt: skip
        assert set(counted["opened"]) - {"list.txt"} == mine  # each of its own videos is read (hashed)
        assert set(counted["stated"]) <= mine | {"list.txt", "folder"}
        assert counted["listed"] == []  # the folder comes from the plan, not from walking it
        for name in mine:
            seen[name] = shard
    assert len(seen) == 12  # every source read by exactly one task


FAKE_SBATCH = """#!/bin/sh
n=$(ls "$SBATCH_LOG" | wc -l)
mkdir -p "$SBATCH_LOG/$n"
for a in "$@"; do echo "$a"; done > "$SBATCH_LOG/$n/args"
eval "last=\\${$#}"
cp "$last" "$SBATCH_LOG/$n/script"
echo "Submitted batch job $((1000 + n))"
"""


def test_slurm_submits_a_requeueing_array_and_a_publish_job_after_it_then_only_unfinished_tasks(
    tmp_path, monkeypatch
):
    import dill

    from safevid.pipeline.engine import BuildTask, launch

    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch"
    bin_dir.mkdir()
    log.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_LOG", str(log))
    serve = "vllm serve Qwen/Qwen2.5-72B-Instruct --port 8001 &"
    overrides = {"engine": {"executor": "slurm", "tasks": 4, "workers": 2,
                            "slurm": {"partition": "hopper", "server_command": serve, "sbatch_args": {"account": "a"}}}}  # fmt: skip
    config = load_build_config(_write_config(tmp_path, "slurm"), overrides)

    result = launch(config)
    assert result.ran == [0, 1, 2, 3]
    calls = sorted(log.iterdir(), key=lambda p: int(p.name))
    scripts = [(c / "script").read_text() for c in calls]
    args = [(c / "args").read_text().split("\n") for c in calls]
    workers = next(i for i, s in enumerate(scripts) if "--job-name=safevid-build\n" in s)
    publish = next(i for i, s in enumerate(scripts) if "--job-name=safevid-build-publish" in s)
    worker_script = scripts[workers]
    for line in ("#SBATCH --requeue", "#SBATCH --array=0-3%2", "#SBATCH --partition=hopper", "#SBATCH --account=a",
                 "#SBATCH --gpus=8", serve, "launch_pickled_pipeline"):  # fmt: skip
        assert line in worker_script
    assert f"--dependency=afterok:{1000 + workers}" in args[publish]
    assert result.submitted == [str(1000 + workers), str(1000 + publish)]
    pickled = dill.loads((result.logging_dir / "executor.pik").read_bytes())
    assert isinstance(pickled.pipeline[0], BuildTask)
    assert pickled.pipeline[0].stages == ("ingest", "describe", "classify", "queries", "responses", "gates")
    assert (config.work_path / "plan" / "shard-00003-of-00004.json").exists()

    # Two tasks completed (their completion marks), then the same command again: only the others are submitted.
    for rank in (0, 2):
        (result.logging_dir / "completions").mkdir(exist_ok=True)
        (result.logging_dir / "completions" / f"{rank:05d}").touch()
    again = launch(load_build_config(_write_config(tmp_path, "slurm"), overrides))
    assert again.ran == [1, 3]
    assert json.loads((again.logging_dir / "ranks_to_run.json").read_text()) == [1, 3]


COUNT_DATASET_OPENS = textwrap.dedent(
    """
    import json, os, sys
    root, config_path, shard, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    opened = set()

    def audit(event, args):
        if event == "open" and isinstance(args[0], (str, os.PathLike)) and str(args[0]).endswith(".parquet"):
            opened.add(os.path.relpath(str(args[0]), root))

    sys.addaudithook(audit)
    from safevid.pipeline import load_build_config
    from safevid.pipeline.context import BuildContext
    from safevid.pipeline.ingest import iter_sources
    keys = [item.key for item in iter_sources(BuildContext(load_build_config(config_path), shard, tasks))]
    print(json.dumps({"opened": sorted(opened), "keys": keys}))
    """
)


def test_a_dataset_input_is_split_by_data_files(tmp_path):
    from datasets import Dataset

    folder = tmp_path / "videos-dataset"
    (folder / "data").mkdir(parents=True)
    for file in range(4):  # four data files of three rows
        rows = {"video": [{"bytes": f"video {file}-{row}".encode(), "path": None} for row in range(3)]}
        Dataset.from_dict(rows).to_parquet(str(folder / "data" / f"train-{file:05d}-of-00004.parquet"))
    config = yaml.safe_load(_write_config(tmp_path, "dataset").read_text())
    config["inputs"] = [{"dataset": str(folder)}]
    path = tmp_path / "dataset.yaml"
    path.write_text(yaml.safe_dump(config))

    keys: list[str] = []
    for shard in range(2):
        done = subprocess.run([sys.executable, "-c", COUNT_DATASET_OPENS, str(folder), str(path), str(shard), "2"],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        counted = json.loads(done.stdout.strip().splitlines()[-1])
        own = [f"data/train-{f:05d}-of-00004.parquet" for f in range(4) if f % 2 == shard]
        # File j goes to task j mod 2. Another task's files are never opened, but for the first: `load_dataset`
        # reads its Parquet schema to infer the features (the footer, not its rows).
        assert set(counted["opened"]) - {"data/train-00000-of-00004.parquet"} == set(own) - {
            "data/train-00000-of-00004.parquet"
        }
        assert len(counted["keys"]) == 6
        keys += counted["keys"]
    assert len(set(keys)) == 12


@pytest.mark.slow
def test_on_a_local_ray_cluster_a_failed_task_is_retried_then_relaunched_alone(tmp_path):
    pytest.importorskip("ray", reason="Ray is not in safevid[dev]: pip install 'safevid[ray]'")
    from safevid.pipeline import run_build

    reference = load_build_config(_write_config(tmp_path, "reference"))
    run_build(reference)
    config = _write_config(tmp_path, "ray")
    failing = _shard_with_videos(config, 3)
    env = {"RAY_ADDRESS": "", "SAFEVID_BUILD_RAISE_AT": f"{failing}:2"}  # a fresh local cluster per run
    first = _cli(config, "--executor", "ray", "--tasks", "3", "--workers", "2", env=env)
    # datatrove's Ray executor resubmits the failing task (it fails again each time), then gives up on it.
    assert first.returncode == 1, first.stdout + first.stderr[-3000:]
    assert f"task {failing}: InjectedFailure" in first.stdout
    second = _cli(config, "--executor", "ray", "--tasks", "3", "--workers", "2", env={"RAY_ADDRESS": ""})
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    assert "1 task(s) ran, 2 were complete already" in second.stdout
    for name in ("default", "conversational"):
        assert read_rows(tmp_path / "ray", name) == read_rows(Path(reference.output_dir), name)
