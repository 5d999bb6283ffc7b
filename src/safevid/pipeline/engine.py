"""The build's worker stages as datatrove tasks: on this machine, a Slurm job array or a Ray cluster.

Task ``r`` of ``N`` is shard ``r`` of ``N`` (`safevid.pipeline.run.run_build` with ``shard=r, num_shards=N``): it
runs every worker stage over its own record store, which stays the checkpoint (a killed task resumes from it)
and the merge layer (publish reads every store). datatrove adds what a fleet of workers needs around that: more
tasks than workers (a free worker takes the next task), a completion mark per task (a relaunch runs only the
tasks not marked; a task is marked only when it returns), Slurm's requeue on preemption, and a publish job that
depends on the workers'. The executor is chosen by the config's ``engine`` block or ``safevid build
--executor/--tasks/--workers``.

Failure is loud: a task whose records failed past their retries raises `TaskFailedError` naming them, so it is
not marked complete and the next launch retries it; a model server that does not answer within
``engine.server_start_timeout_s`` stops the task with `ServerNotUpError` naming it. The launcher reports the
unfinished tasks with the reason each gave (`BuildTasksFailedError`).

Before the tasks start, the launcher lists the folder inputs once (`safevid.pipeline.ingest.write_plan`): no task
walks a folder or stats a file of another task.
"""

from __future__ import annotations

import contextlib
import logging
import time
import urllib.error
import urllib.request
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.stats import PipelineStats

from safevid.pipeline.config import BuildConfig
from safevid.pipeline.stages import PUBLISH, stage, worker_stage_names

__all__ = [
    "BuildTask",
    "BuildTasksFailedError",
    "EngineResult",
    "ServerNotUpError",
    "TaskFailedError",
    "launch",
    "wait_for_servers",
]
logger = logging.getLogger(__name__)
FAILURES = "failures"  # under a run's logging folder: <rank>.txt, why a task did not complete


class TaskFailedError(RuntimeError):
    """A task ended with records that failed past their retries (the next launch retries them)."""


class ServerNotUpError(RuntimeError):
    """A model server did not answer within ``engine.server_start_timeout_s``."""


class BuildTasksFailedError(RuntimeError):
    """Some tasks of a launch did not complete; the message names each with its reason."""


@dataclass
class EngineResult:
    """What a `launch` did.

    Attributes:
        logging_dir: datatrove's folder of this launch (logs, completions, launch scripts, failures).
        ran: The tasks this launch ran (or submitted); the others were complete already.
        submitted: Slurm job ids (workers, then publish), when the executor is ``slurm``.
        publish: The `safevid.pipeline.run.BuildResult` of the publish step, when it ran here.
    """

    logging_dir: Path
    ran: list[int]
    submitted: list[str]
    publish: Any = None


def wait_for_servers(config: BuildConfig, timeout_s: float, *, poll_s: float = 2.0) -> None:
    """Wait until every model server the config names (``models.*.base_url``) answers ``GET <base_url>/models``.

    Any HTTP answer but a 5xx counts (a 401 is a server asking for its key: it is up). Servers are polled in
    turn, each within what is left of ``timeout_s``.

    Raises:
        ServerNotUpError: naming the first server (and the models on it) that did not answer in time.
    """
    servers: dict[str, list[str]] = {}
    for name, spec in config.models.items():
        if spec.get("base_url"):
            servers.setdefault(str(spec["base_url"]).rstrip("/"), []).append(name)
    deadline = time.monotonic() + timeout_s
    for url, names in servers.items():
        last = "no answer yet"
        while True:
            try:
                with urllib.request.urlopen(url + "/models", timeout=max(1.0, min(10.0, timeout_s))):
                    break
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    break
                last = f"HTTP {e.code}"
            except (OSError, TimeoutError) as e:  # URLError, refused, reset, timed out
                last = str(getattr(e, "reason", e))
            if time.monotonic() >= deadline:
                models = ", ".join(f"models.{n}" for n in names)
                raise ServerNotUpError(
                    f"the model server at {url} ({models}) did not answer within {timeout_s:g} s ({last}): start "
                    "it, fix its base_url, or raise engine.server_start_timeout_s"
                )
            time.sleep(poll_s)
        logger.info("model server %s is up", url)


class _LocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor, where a failed task does not stop the others (it stays unmarked).

    datatrove's own lets the first task error end the pool, killing the tasks in flight. With one worker the
    tasks run in this process, one after another, without the manager process datatrove starts (which would
    outlive a SIGKILLed build, holding its output pipes).
    """

    def run(self) -> None:
        if self.workers != 1:
            super().run()
            return
        self.save_executor_as_json()
        pipeline = self.pipeline
        for rank in self.get_incomplete_ranks(
            range(self.local_rank_offset, self.local_rank_offset + self.local_tasks)
        ):
            self.pipeline = deepcopy(pipeline)  # as datatrove does: each task starts from the pristine step
            # A task's error is in its failure file and log; `launch` reports it.
            with contextlib.suppress(Exception):
                self._run_for_rank(rank)
        self.pipeline = pipeline

    def _launch_run_for_rank(
        self, rank: int, ranks_q: Any, completed: Any = None, completed_lock: Any = None
    ) -> PipelineStats:
        try:
            return super()._launch_run_for_rank(rank, ranks_q, completed, completed_lock)
        except Exception:  # in the task's failure file and log; `launch` reports it
            return PipelineStats()


class BuildTask:
    """One datatrove pipeline step: the worker stages of shard ``rank`` of ``world_size`` (picklable)."""

    def __init__(
        self,
        config: BuildConfig,
        stages: tuple[str, ...],
        logging_dir: Path,
        *,
        new_output: bool,
        progress: bool,
    ) -> None:
        self.config = config
        self.stages = stages
        self.logging_dir = logging_dir
        self.new_output = new_output
        self.progress = progress

    def __repr__(self) -> str:
        return f"safevid build task ({' → '.join(self.stages)})"

    def __call__(self, data: Any, rank: int = 0, world_size: int = 1) -> None:
        from safevid.log import configure_logging

        configure_logging()  # a task may run in a fresh process (forkserver, srun, a Ray worker)
        failure = self.logging_dir / FAILURES / f"{rank:05d}.txt"
        failure.unlink(missing_ok=True)
        try:
            from safevid.pipeline.run import failed_records, run_build

            if any(stage(s).model for s in self.stages):  # only model stages need their servers up
                wait_for_servers(self.config, self.config.engine.server_start_timeout_s)
            result = run_build(
                self.config,
                shard=rank,
                num_shards=world_size,
                stages=self.stages,
                new_output=self.new_output,
                progress=self.progress,
            )
            if not result.complete:
                failed = failed_records(result.store_path)
                raise TaskFailedError(
                    f"task {rank} of {world_size}: {failed}. Relaunch the build to retry them."
                )
        except Exception as e:
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(f"{type(e).__name__}: {e}\n", encoding="utf-8")
            raise


def launch(
    config: BuildConfig,
    *,
    stages: tuple[str, ...] | None = None,
    new_output: bool = False,
    progress: bool = False,
) -> EngineResult:
    """Run the build's worker stages as ``config.engine.tasks`` datatrove tasks, then publish.

    Local and Ray: the tasks run now; when all are complete, publish merges their stores here. Slurm: the worker
    array and a publish job depending on it are submitted (``sbatch``), and this returns their ids; publish alone
    (no worker stage) runs here whatever the executor.

    Raises:
        BuildTasksFailedError: some tasks did not complete (local, Ray), each named with its reason.
        ShardCountError: the work folder holds the stores of another task count.
    """
    from safevid.pipeline.ingest import write_plan
    from safevid.pipeline.run import check_shard_count, run_build

    engine = config.engine
    stages = stages or (*worker_stage_names(), PUBLISH)
    workers = tuple(s for s in worker_stage_names() if s in stages)
    publish = PUBLISH in stages
    check_shard_count(config, engine.tasks)
    root = Path(engine.logging_dir) if engine.logging_dir else config.work_path / "engine"
    # One folder per stage set: a task complete for `--stage describe` is not complete for the whole build.
    subset = "" if workers == worker_stage_names() else f"-{'+'.join(workers) or PUBLISH}"
    logging_dir = root / f"tasks-{engine.tasks:05d}{subset}"
    _report_earlier_failures(logging_dir)
    if "ingest" in workers:
        write_plan(config, engine.tasks)
    task = BuildTask(config, workers, logging_dir, new_output=new_output, progress=progress)
    if engine.executor == "slurm" and workers:
        return _submit_slurm(config, task, logging_dir, publish)
    result = EngineResult(logging_dir, [], [])
    if workers:
        executor = _local_or_ray(config, task, logging_dir)
        result.ran = executor.get_incomplete_ranks()
        try:
            executor.run()
        except Exception as e:  # a task's own error is in its failure file; report them all below
            logger.debug("executor stopped: %s", e)
        unfinished = executor.get_incomplete_ranks()
        if unfinished:
            raise BuildTasksFailedError(_unfinished_message(logging_dir, unfinished, engine.tasks))
    if publish:
        result.publish = run_build(config, num_shards=engine.tasks, stages=(PUBLISH,), new_output=new_output)
    return result


def _local_or_ray(config: BuildConfig, task: BuildTask, logging_dir: Path) -> Any:
    engine = config.engine
    if engine.executor == "ray":
        try:
            import ray
        except ImportError as e:
            raise RuntimeError("engine.executor: ray needs Ray: pip install 'safevid[ray]'") from e
        from datatrove.executor import RayPipelineExecutor

        if not ray.is_initialized():
            ray.init()  # joins the cluster at RAY_ADDRESS, or starts one on this machine
        return RayPipelineExecutor(
            [task],
            tasks=engine.tasks,
            workers=engine.workers,
            logging_dir=str(logging_dir),
            cpus_per_task=engine.ray.cpus_per_task,
            gpus_per_task=engine.ray.gpus_per_task,
            mem_per_cpu_gb=engine.ray.mem_per_cpu_gb,
        )
    return _LocalExecutor([task], tasks=engine.tasks, workers=engine.workers, logging_dir=str(logging_dir))


def _submit_slurm(config: BuildConfig, task: BuildTask, logging_dir: Path, publish: bool) -> EngineResult:
    from datatrove.executor import SlurmPipelineExecutor

    engine, slurm = config.engine, config.engine.slurm
    env = "\n".join(line for line in (slurm.env_command, slurm.server_command) if line)
    common = dict(partition=slurm.partition, qos=slurm.qos or "", sbatch_args=dict(slurm.sbatch_args),
                  mem_per_cpu_gb=slurm.mem_per_cpu_gb, requeue=True, skip_completed=True)  # fmt: skip
    workers = None
    if task.stages:
        workers = SlurmPipelineExecutor(
            [task],
            tasks=engine.tasks,
            workers=engine.workers,
            time=slurm.time,
            cpus_per_task=slurm.cpus_per_task,
            gpus_per_task=slurm.gpus_per_task,
            job_name=slurm.job_name,
            env_command=env or None,
            tasks_per_job=slurm.tasks_per_job,
            logging_dir=str(logging_dir),
            slurm_logs_folder=str(logging_dir / "slurm_logs"),
            **common,
        )
    ran = workers.get_incomplete_ranks() if workers is not None else []
    submitted: list[str] = []
    if publish:
        publisher = SlurmPipelineExecutor(
            [PublishTask(config, engine.tasks, task.new_output)],
            tasks=1,
            time=slurm.publish_time,
            cpus_per_task=slurm.publish_cpus,
            job_name=f"{slurm.job_name}-publish",
            env_command=slurm.env_command,
            depends=workers,
            skip_completed=False,  # publish again when relaunched: the stores may have changed
            logging_dir=str(logging_dir.parent / f"{logging_dir.name}-publish"),
            slurm_logs_folder=str(logging_dir / "slurm_logs"),
            **{k: v for k, v in common.items() if k != "skip_completed"},
        )
        publisher.run()
        jobs = (workers.job_id if workers is not None else None, publisher.job_id)
        submitted = [str(j) for j in jobs if j not in (None, -1)]
    elif workers is not None:
        workers.run()
        submitted = [str(workers.job_id)] if workers.job_id not in (None, -1) else []
    return EngineResult(logging_dir, ran, submitted)


class PublishTask:
    """The publish step as a datatrove task (the Slurm job that depends on the workers' array)."""

    def __init__(self, config: BuildConfig, num_shards: int, new_output: bool) -> None:
        self.config, self.num_shards, self.new_output = config, num_shards, new_output

    def __repr__(self) -> str:
        return f"safevid publish ({self.num_shards} shards)"

    def __call__(self, data: Any, rank: int = 0, world_size: int = 1) -> None:
        from safevid.log import configure_logging
        from safevid.pipeline.run import run_build

        configure_logging()
        run_build(self.config, num_shards=self.num_shards, stages=(PUBLISH,), new_output=self.new_output)


def _report_earlier_failures(logging_dir: Path) -> None:
    folder = logging_dir / FAILURES
    for path in sorted(folder.glob("*.txt")) if folder.is_dir() else ():
        logger.info("retrying task %d, which failed last time: %s", int(path.stem), path.read_text().strip())


def _unfinished_message(logging_dir: Path, ranks: list[int], tasks: int) -> str:
    lines = []
    for rank in ranks:
        failure = logging_dir / FAILURES / f"{rank:05d}.txt"
        reason = failure.read_text(encoding="utf-8").strip() if failure.exists() else "did not run to its end"
        lines.append(f"task {rank}: {reason}")
    return (
        f"{len(ranks)} of {tasks} task(s) did not complete (logs: {logging_dir / 'logs'}); relaunch the same "
        "command to run only those:\n  " + "\n  ".join(lines)
    )
