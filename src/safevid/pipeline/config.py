"""The typed build configuration: one YAML file with every stage's model, backend and counts.

Read by the one configuration loader (`safevid.config.load_config`): unknown and duplicate keys are an error at
every level (a typo never silently falls back to a default), types are checked. Relative
paths of inputs, taxonomy, prompt folder and card template are looked up next to the config file
first, then in the working directory; ``output_dir`` and ``work_dir`` are relative to the working
directory, so the default ``safevid-350k`` lands where ``load_dataset("safevid-350k")`` finds it.

Models are declared once under ``models`` (a name → `safevid.backends.BackendConfig` fields) and
stages refer to them by name; stages naming the same model share one backend. ``model: <prefix>:<name>``
goes through an installed model resolver (`safevid.plugins`): ``tiny:<family>`` is a tiny random-weight
checkpoint built offline by safevid's test kit (demos and tests only).

The config **fingerprint** hashes everything that changes the rows (models and revisions, prompt
templates, taxonomy, sampling, counts, gates) and nothing operational (server URLs, concurrency,
timeouts, caches, shard counts, the ``engine`` block, publish layout): a store or an output folder built under another
fingerprint is refused, never mixed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from safevid.config import ConfigError, did_you_mean, from_dict, load_config
from safevid.paths import resolve_config_path
from safevid.pipeline.stages import worker_stage_names
from safevid.video import VideoSampling

DEFAULT_OUTPUT_DIR = "safevid-350k"


@dataclass
class InputSpec:
    """One source of videos. Set exactly one of ``folder``, ``list_file``, ``dataset``, ``test_videos``."""

    folder: str | None = field(default=None, metadata={"help": "A folder searched recursively for videos."})
    list_file: str | None = field(
        default=None,
        metadata={"help": "A text file with one local path or http(s) URL per line (# comments)."},
    )
    dataset: str | None = field(
        default=None, metadata={"help": "A Hub dataset id or local dataset folder with a video column."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Config name of `dataset`."})
    split: str = field(default="train", metadata={"help": "Split of `dataset`."})
    video_column: str = field(default="video", metadata={"help": "The video column of `dataset`."})
    video_root: str | None = field(
        default=None,
        metadata={"help": "Folder that relative video cells of `dataset` name (default: the dataset's own)."},
    )
    allowed_local_media_path: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Roots under which absolute video cells of `dataset` (or cells climbing out with `..`) may be "
            "read; by default none are."
        },
    )
    test_videos: int | None = field(
        default=None, metadata={"help": "Generate this many synthetic test videos (demos and tests)."}
    )

    def __post_init__(self) -> None:
        given = [k for k in ("folder", "list_file", "dataset", "test_videos") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(
                f"each entry of `inputs` needs exactly one of folder, list_file, dataset, test_videos; got {given or 'none'}"
            )
        if self.test_videos is not None and not 1 <= self.test_videos <= 64:
            raise ConfigError(f"inputs.test_videos must be in 1..64, got {self.test_videos}")


@dataclass
class StageSampling:
    """Sampling of a generation stage. With ``temperature > 0`` every request carries a seed derived from
    its record key, so a resumed or re-sharded build regenerates exactly what it would have."""

    max_tokens: int = field(default=512, metadata={"help": "Tokens per generated text."})
    temperature: float = field(default=0.0, metadata={"help": "0 is greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus mass."})


@dataclass
class DescribeConfig:
    """``describe:``: the video LMM writing each video's description, and its sampling."""

    model: str = field(default="describer", metadata={"help": "Name of a `models` entry (a video LMM)."})
    sampling: StageSampling = field(default_factory=lambda: StageSampling(max_tokens=768))
    batch_size: int = field(default=32, metadata={"help": "Videos per commit (requests are streamed)."})


@dataclass
class ClassifyConfig:
    """``classify:``: the LLM mapping descriptions to the taxonomy by choice-constrained votes."""

    model: str = field(default="classifier", metadata={"help": "Name of a `models` entry (an LLM)."})
    votes: int = field(
        default=8, metadata={"help": "Choice samples per video; labels are the subcategories voted for."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the votes."})
    min_votes: int = field(default=2, metadata={"help": "Votes a subcategory needs to become a label."})
    max_labels: int = field(default=3, metadata={"help": "Most labels per video (by votes)."})
    rule_votes: int = field(default=4, metadata={"help": "Choice samples to pick the rules a label applies."})
    batch_size: int = field(default=64, metadata={"help": "Videos per commit (requests are streamed)."})

    def __post_init__(self) -> None:
        if not 1 <= self.min_votes <= self.votes:
            raise ConfigError(f"classify.min_votes must be in 1..votes ({self.votes}), got {self.min_votes}")
        if self.max_labels < 1 or self.rule_votes < 1:
            raise ConfigError("classify.max_labels and classify.rule_votes must be >= 1")


@dataclass
class QueriesConfig:
    """``queries:``: the LLM writing rule-driven queries, and how many per query style."""

    model: str = field(default="query_writer", metadata={"help": "Name of a `models` entry."})
    per_style: dict[str, int] = field(
        default_factory=lambda: {
            "explicit": 2,
            "implicit": 2,
            "jailbreak_roleplay": 1,
            "jailbreak_hypothetical": 1,
            "jailbreak_continuation": 1,
            "temporal": 1,
            "benign_contrast": 2,
        },
        metadata={"help": "Queries per (video, subcategory) for each query style id of the taxonomy."},
    )
    sampling: StageSampling = field(default_factory=lambda: StageSampling(max_tokens=128, temperature=0.9))
    batch_size: int = field(default=256, metadata={"help": "Queries per commit (requests are streamed)."})

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.per_style.items() if not isinstance(v, int) or v < 0}
        if bad:
            raise ConfigError(f"queries.per_style counts must be integers >= 0, got {bad}")


@dataclass
class ResponsesConfig:
    """``responses:``: the models writing chosen and rejected replies."""

    chosen_model: str = field(
        default="responder", metadata={"help": "LLM writing the rule-guided chosen reply."}
    )
    rejected_source: Literal["target", "comply"] = field(
        default="target",
        metadata={
            "help": "target: the target video LMM answers the query on the video; comply: an LLM prompted to comply."
        },
    )
    rejected_model: str = field(default="target", metadata={"help": "Model of the rejected reply."})
    refusal_model: str = field(
        default="responder", metadata={"help": "LLM writing the needless refusal (benign-contrast rejected)."}
    )
    chosen_sampling: StageSampling = field(default_factory=lambda: StageSampling(max_tokens=512))
    rejected_sampling: StageSampling = field(
        default_factory=lambda: StageSampling(max_tokens=512, temperature=0.7)
    )
    batch_size: int = field(default=128, metadata={"help": "Queries per commit (requests are streamed)."})


@dataclass
class DedupConfig:
    """``gates.dedup:``: exact and near-duplicate query removal across the set."""

    exact: bool = field(default=True, metadata={"help": "Drop exact duplicate queries (normalised text)."})
    near_threshold: float | None = field(
        default=0.85,
        metadata={"help": "Jaccard estimate above which a query is a near duplicate; null: off."},
    )
    num_perm: int = field(default=64, metadata={"help": "MinHash permutations."})
    shingle: int = field(default=3, metadata={"help": "Word n-gram size of the shingles."})
    scope: Literal["video", "global"] = field(
        default="video", metadata={"help": "Compare queries of the same video only, or across the whole set."}
    )


@dataclass
class DecontaminationConfig:
    """``gates.decontamination:``: the benchmark whose videos and queries the set must not share."""

    dataset: str | None = field(
        default=None, metadata={"help": "Benchmark dataset (Hub id, folder or file)."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Its config name."})
    split: str = field(default="test", metadata={"help": "Its split."})
    video_column: str = field(default="video", metadata={"help": "Video column (hashed like ours)."})
    video_id_column: str | None = field(
        default="video_id", metadata={"help": "Column of content-hash video ids."}
    )
    query_column: str = field(default="prompt", metadata={"help": "Query column."})
    near_threshold: float = field(default=0.8, metadata={"help": "Near-duplicate query threshold."})


@dataclass
class GatesConfig:
    """``gates:``: the safety judge per pair (``judge_mode``), dedup and decontamination."""

    judge_mode: Literal["enforce", "record", "off"] = field(
        default="enforce",
        metadata={"help": "enforce: drop pairs whose chosen is not judged safe or rejected not unsafe; "
                  "record: store verdicts only (tiny random judges); off: no judge calls."},
    )  # fmt: skip
    judge_model: str = field(default="judge", metadata={"help": "Name of a `models` entry."})
    judge_style: Literal["choice", "text"] = field(
        default="choice",
        metadata={"help": "choice: constrained 1-5 with log-probabilities; text: free text."},
    )
    threshold: float = field(default=2.85, metadata={"help": "Risk above this is unsafe."})
    min_mass: float | None = field(
        default=None, metadata={"help": "Least digit mass (default per judge style)."}
    )
    top_logprobs: int = field(default=5, metadata={"help": "Alternatives per token for the expected score."})
    judge_max_tokens: int = field(default=256, metadata={"help": "Tokens of a text-style judgement."})
    batch_size: int = field(default=256, metadata={"help": "Pairs per commit (requests are streamed)."})
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontaminate: DecontaminationConfig = field(default_factory=DecontaminationConfig)


@dataclass
class PublishConfig:
    """``publish:``: Parquet layout, card, license, gating and Hub target."""

    embed_videos: bool = field(default=True, metadata={"help": "Embed video bytes; false: reference paths."})
    rows_per_shard: int = field(default=5000, metadata={"help": "Rows per Parquet file."})
    rows_per_row_group: int = field(default=64, metadata={"help": "Rows per row group (bounds memory)."})
    test_fraction: float = field(
        default=0.0, metadata={"help": "Videos (by hash) held out into a test split."}
    )
    license: str = field(default="cc-by-nc-sa-4.0", metadata={"help": "Dataset license id."})
    pretty_name: str = field(default="SafeVid-350K", metadata={"help": "Name shown on the card."})
    card_template: str | None = field(
        default=None, metadata={"help": "A Jinja card template; packaged default."}
    )
    gated: bool = field(default=True, metadata={"help": "Write gating fields (extra_gated_prompt...)."})
    extra_gated_prompt: str = field(
        default="This dataset contains adversarial queries about sensitive videos and unsafe (rejected) model "
        "responses, for safety-alignment research only. By requesting access you agree not to use it to "
        "cause harm and to follow the license.",
        metadata={"help": "Gating prompt shown on the Hub."},
    )
    extra_gated_fields: dict[str, str] = field(
        default_factory=lambda: {
            "Affiliation": "text",
            "I agree to use this dataset for safety research only": "checkbox",
        },
        metadata={"help": "Gating form fields."},
    )
    repo_id: str | None = field(
        default=None, metadata={"help": "Hub repo for --push-to-hub (<org>/safevid-350k)."}
    )
    private: bool = field(default=False, metadata={"help": "Create the Hub repo private."})
    files_per_commit: int = field(
        default=50, metadata={"help": "Files per upload commit (resumable pushes)."}
    )

    def __post_init__(self) -> None:
        if self.rows_per_shard < 1 or self.rows_per_row_group < 1:
            raise ConfigError("publish.rows_per_shard and rows_per_row_group must be >= 1")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(f"publish.test_fraction must be in [0, 1), got {self.test_fraction}")


@dataclass
class SlurmConfig:
    """``engine.slurm:``: the sbatch directives of the worker tasks' job array and of the publish job."""

    partition: str = field(default="gpu", metadata={"help": "Slurm partition of the worker tasks."})
    time: str = field(
        default="24:00:00", metadata={"help": "Time limit of one worker task (a requeued task resumes)."}
    )
    gpus_per_task: int = field(
        default=8, metadata={"help": "GPUs of one worker task (its node's model servers)."}
    )
    cpus_per_task: int = field(default=32, metadata={"help": "CPUs of one worker task (decode workers)."})
    mem_per_cpu_gb: int = field(default=8, metadata={"help": "Memory per CPU, GiB."})
    qos: str | None = field(
        default=None, metadata={"help": "Quality of service (none: the cluster's default)."}
    )
    job_name: str = field(
        default="safevid-build", metadata={"help": "Job name (the publish job adds -publish)."}
    )
    env_command: str | None = field(
        default=None,
        metadata={"help": "Shell line run first in every job (module load ..., source .venv/bin/activate)."},
    )
    server_command: str | None = field(
        default=None,
        metadata={"help": "Shell lines starting this node's model servers in the background (vllm serve ... &), "
                  "run before the task; the task then waits for them (`server_start_timeout_s`)."},
    )  # fmt: skip
    sbatch_args: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Further sbatch directives (account, constraint, ...)."}
    )
    tasks_per_job: int = field(
        default=1,
        metadata={"help": "Tasks one array job runs in turn on its node, reusing the servers it started."},
    )
    publish_time: str = field(default="12:00:00", metadata={"help": "Time limit of the publish job."})
    publish_cpus: int = field(default=8, metadata={"help": "CPUs of the publish job."})


@dataclass
class RayConfig:
    """``engine.ray:``: resources of one worker task on a Ray cluster (``ray.init`` joins a running one)."""

    cpus_per_task: int = field(default=1, metadata={"help": "CPUs Ray reserves per task."})
    gpus_per_task: int = field(
        default=0, metadata={"help": "GPUs Ray reserves per task (0: servers are external)."}
    )
    mem_per_cpu_gb: float = field(default=2.0, metadata={"help": "Memory per CPU, GiB."})


@dataclass
class EngineConfig:
    """``engine:``: where the worker stages run (operational: not part of the fingerprint).

    The sources are split into ``tasks`` shards; each is one datatrove task running every worker stage on its
    own record store. A relaunch skips the tasks already complete and retries the others; publish then merges
    the stores.
    """

    executor: Literal["local", "slurm", "ray"] = field(
        default="local",
        metadata={
            "help": "local: processes on this machine; slurm: a job array (sbatch); ray: a Ray cluster."
        },
    )
    tasks: int = field(default=1, metadata={"help": "Shards of the sources, one datatrove task each."})
    workers: int = field(
        default=1,
        metadata={
            "help": "Tasks running at once (local: processes; slurm: array jobs at once; -1: no limit)."
        },
    )
    logging_dir: str | None = field(
        default=None,
        metadata={"help": "datatrove's logs, completions and launch scripts; <work_dir>/engine by default."},
    )
    server_start_timeout_s: float = field(
        default=1800.0,
        metadata={"help": "How long a task waits for each of its models' servers (base_url) to answer."},
    )
    slurm: SlurmConfig = field(
        default_factory=SlurmConfig, metadata={"help": "With executor slurm: the jobs' sbatch directives."}
    )
    ray: RayConfig = field(
        default_factory=RayConfig, metadata={"help": "With executor ray: each task's resources."}
    )

    def __post_init__(self) -> None:
        if self.tasks < 1:
            raise ConfigError(f"engine.tasks must be >= 1, got {self.tasks}")
        if self.workers < 1 and self.workers != -1:
            raise ConfigError(f"engine.workers must be >= 1 (or -1: all tasks at once), got {self.workers}")
        if self.server_start_timeout_s <= 0:
            raise ConfigError(f"engine.server_start_timeout_s must be > 0, got {self.server_start_timeout_s}")


@dataclass
class BuildConfig:
    """The whole build. See ``hub/datasets/safevid-350k/config_*.yaml`` for annotated examples."""

    models: dict[str, dict[str, Any]] = field(
        default_factory=dict, metadata={"help": "Name → BackendConfig fields (kind, model, base_url, ...)."}
    )
    inputs: list[InputSpec] = field(default_factory=list, metadata={"help": "Video sources."})
    output_dir: str = field(
        default=DEFAULT_OUTPUT_DIR, metadata={"help": "Dataset folder written by publish."}
    )
    work_dir: str | None = field(
        default=None,
        metadata={"help": "Record stores and downloads; <output_dir>/.safevid-build by default."},
    )
    taxonomy: str | None = field(
        default=None, metadata={"help": "Taxonomy YAML; the packaged one by default."}
    )
    prompts_dir: str | None = field(default=None, metadata={"help": "Folder overriding prompt templates."})
    seed: int = field(default=0, metadata={"help": "Seed of every sampled request (combined with its key)."})
    sampling: dict[str, Any] = field(
        default_factory=lambda: {"num_frames": 16},
        metadata={"help": "VideoSampling fields, shared by all stages."},
    )
    decode_workers: int | None = field(
        default=None,
        metadata={
            "help": "Decode worker processes (ingest samples, describe encodes); the CPU count by default."
        },
    )
    describe: DescribeConfig = field(default_factory=DescribeConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    queries: QueriesConfig = field(default_factory=QueriesConfig)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    engine: EngineConfig = field(
        default_factory=EngineConfig,
        metadata={
            "help": "Where the worker stages run: local, Slurm or Ray tasks (operational; docs/scale.md)."
        },
    )
    source_file: str | None = field(default=None, metadata={"help": "Set by the loader: the YAML file."})

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("`inputs` must list at least one video source")
        if self.decode_workers is not None and self.decode_workers < 1:
            raise ConfigError(
                f"decode_workers must be >= 1 (or null for the CPU count), got {self.decode_workers}"
            )
        try:
            VideoSampling.from_dict(self.sampling)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"sampling: {e}") from e
        for name, spec in self.models.items():
            if not isinstance(spec, dict) or "model" not in spec:
                raise ConfigError(f"models.{name} must be a mapping with at least `model` (and `kind`)")
        stages = {
            "describe.model": self.describe.model,
            "classify.model": self.classify.model,
            "queries.model": self.queries.model,
            "responses.chosen_model": self.responses.chosen_model,
            "responses.rejected_model": self.responses.rejected_model,
            "responses.refusal_model": self.responses.refusal_model,
        }
        if self.gates.judge_mode != "off":
            stages["gates.judge_model"] = self.gates.judge_model
        for where, name in stages.items():
            if name not in self.models:
                raise ConfigError(
                    f"{where}: no model named {name!r} under `models`{did_you_mean(name, self.models)}; "
                    f"declared: {sorted(self.models)}"
                )

    # --- derived -------------------------------------------------------------------------------
    @property
    def video_sampling(self) -> VideoSampling:
        return VideoSampling.from_dict(self.sampling)

    def resolve_path(self, path: str) -> Path:
        """An input path: next to the config file if it exists there, else relative to the working directory."""
        return resolve_config_path(path, self.source_file)

    @property
    def work_path(self) -> Path:
        return Path(self.work_dir) if self.work_dir else Path(self.output_dir) / ".safevid-build"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source_file")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> BuildConfig:
        """Build from parsed YAML; raises [`ConfigError`] naming the file and key on any problem."""
        try:
            config = from_dict(cls, data)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        config.source_file = None if source == "<dict>" else source
        return config


# Keys that change how requests travel, never what comes back: left out of the fingerprint.
_OPERATIONAL_BACKEND_KEYS = {
    "base_url", "api_key_env", "http_client", "max_concurrency", "timeout_s", "max_retries", "backoff_base_s",
    "backoff_max_s", "max_retry_after_s", "cache", "cache_dir", "device", "batch_size", "gpu_memory_utilization",
}  # fmt: skip


def fingerprint_payload(
    config: BuildConfig, taxonomy_sha: str, prompt_shas: dict[str, str]
) -> dict[str, Any]:
    """What identifies the rows a config builds (see the module docstring)."""
    data = config.to_dict()
    for key in ("output_dir", "work_dir", "publish", "decode_workers", "engine"):
        data.pop(key)
    data["models"] = {
        name: {k: v for k, v in spec.items() if k not in _OPERATIONAL_BACKEND_KEYS}
        for name, spec in config.models.items()
    }
    for stage in worker_stage_names(model=True):
        data[stage].pop("batch_size", None)
    data["inputs"] = [dict(spec) for spec in data["inputs"]]
    data["taxonomy"] = taxonomy_sha
    data["prompts"] = dict(sorted(prompt_shas.items()))
    data.pop("prompts_dir")
    return data


def fingerprint(payload: dict[str, Any]) -> str:
    """SHA-256 of a `fingerprint_payload`: a build's identity, checked on every rerun and publish."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def diff_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two fingerprint payloads."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += diff_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def load_build_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Load a build config from YAML, apply dotted-key ``overrides`` (``{"output_dir": ...}``), validate.

    Raises:
        ConfigError: unreadable YAML, duplicate or unknown keys, wrong types or inconsistent values.
    """
    return load_config(path, BuildConfig, overrides)
