"""The SafeVidBench build: held-out videos × every taxonomy subcategory × every query style, as a Hub dataset.

The builder runs the SafeVid build pipeline's own stages — ``ingest`` → ``describe`` → ``classify`` →
``queries`` (`safevid.pipeline.run_build`) — on the benchmark's videos, so the benchmark's descriptions,
labels and queries come from exactly the code that builds the training data, resumable in the same
record store. Then it:

1. **Holds out** every video whose content hash (SHA-256 of the bytes, the pipeline's video id) appears in
   a training dataset (``exclude.datasets``: a folder or Hub id with a ``video_id`` column, or a video column
   it hashes) or in a list of hashes (``exclude.video_id_files``). Excluded videos are marked dropped
   (``in_training_set``) right after ingest, so they are never described, and filtered again at selection.
2. **Balances** per subcategory: for each subcategory, the ``videos_per_subcategory`` videos the classifier
   labelled with it most confidently (most votes, then video id) whose queries cover every requested style;
   every (subcategory, style) cell gets ``videos_per_subcategory × queries_per_style`` items. A cell short of
   that is reported in the card and manifest, and is an error with ``require_full_coverage``.
3. **Writes** Parquet under ``data/`` — ``harmful-*.parquet`` and ``benign_contrast-*.parquet`` — and a card
   whose configs are ``default`` (split ``test``: every item), ``harmful`` and ``benign_contrast`` (the
   over-refusal split), plus ``safevid_manifest.json`` (config, models, revisions, prompt hashes, counts,
   coverage, exclusion statistics). ``load_dataset("<folder or org/name>", split="test")`` reads it.
4. **Pushes** with the pipeline's resumable `safevid.pipeline.publish.push_to_hub`.

The default output folder is ``safevidbench`` (``load_dataset("safevidbench")`` finds it).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safevid.config import from_dict, load_config
from safevid.paths import resolve_config_path
from safevid.pipeline.card import card_metadata, render_card
from safevid.pipeline.config import BuildConfig, DecontaminationConfig
from safevid.pipeline.dedup import iter_video_ids_and_queries
from safevid.pipeline.publish import MANIFEST_NAME, ParquetShardWriter, push_to_hub, swap_in_staged
from safevid.pipeline.run import run_build, store_path
from safevid.pipeline.store import DROPPED, OK, Record, RecordStore
from safevid.schema import benchmark_features
from safevid.taxonomy import load_taxonomy

__all__ = ["BenchmarkConfig", "BenchmarkResult", "build_benchmark", "load_benchmark_config", "read_video_ids"]

DEFAULT_OUTPUT_DIR = "safevidbench"
BENIGN_SPLIT, HARMFUL_SPLIT = "benign_contrast", "harmful"
EXCLUDED_REASON = "in_training_set"
# Pipeline stages the benchmark reuses; responses and gates belong to preference data, not to a benchmark.
BENCH_STAGES = ("describe", "classify", "queries")


@dataclass
class ExcludeConfig:
    """Videos the benchmark must not contain (its training data), by content hash."""

    datasets: list[dict[str, Any]] = field(
        default_factory=list,
        metadata={
            "help": "Training datasets: {dataset, dataset_config, split, video_id_column, video_column, "
            "query_column} (a Hub id or folder; video ids read from video_id_column or hashed from the video)."
        },
    )
    video_id_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Text files of video SHA-256 hashes, one per line (# comments)."},
    )


@dataclass
class BenchmarkConfig:
    """A SafeVidBench build. See ``hub/datasets/safevidbench/config_demo.yaml``.

    Args:
        pipeline: The build pipeline's configuration (``safevid.pipeline.BuildConfig`` fields): ``models``,
            ``inputs``, ``sampling``, ``taxonomy``, ``prompts_dir``, ``seed``, ``describe``, ``classify`` and
            ``queries`` (model and sampling; ``per_style`` is set from ``styles``/``queries_per_style``).
        output_dir: The dataset folder.
        subcategories: Subcategory ids to cover; all of the taxonomy's by default.
        styles: Query style ids to cover; all of the taxonomy's by default (``benign_contrast`` included).
        videos_per_subcategory: Videos selected per subcategory (balance).
        queries_per_style: Queries per (video, subcategory, style).
        require_full_coverage: Fail if some (subcategory, style) cell has fewer items than the others should.
        exclude: The training data to hold out from (see `ExcludeConfig`).
    """

    pipeline: dict[str, Any]
    output_dir: str = DEFAULT_OUTPUT_DIR
    subcategories: list[str] | None = None
    styles: list[str] | None = None
    videos_per_subcategory: int = 2
    queries_per_style: int = 1
    require_full_coverage: bool = True
    exclude: ExcludeConfig = field(default_factory=ExcludeConfig)
    pretty_name: str = "SafeVidBench"
    license: str = "cc-by-nc-sa-4.0"
    card_template: str | None = None
    embed_videos: bool = True
    repo_id: str | None = None
    private: bool = False
    source_file: str | None = None

    def __post_init__(self) -> None:
        if self.videos_per_subcategory < 1 or self.queries_per_style < 1:
            raise ValueError("videos_per_subcategory and queries_per_style must be >= 1")
        if isinstance(self.exclude, dict):
            self.exclude = from_dict(ExcludeConfig, self.exclude, "exclude.")
        not_ours = sorted(set(self.pipeline) & {"responses", "gates", "publish", "output_dir"})
        if not_ours:
            raise ValueError(
                f"pipeline.{not_ours[0]}: SafeVidBench runs only ingest/describe/classify/queries; "
                f"remove {not_ours} (set output_dir at the top level)"
            )
        if "per_style" in self.pipeline.get("queries", {}):
            raise ValueError(
                "pipeline.queries.per_style is set by the builder: use `styles` and `queries_per_style`"
            )

    def resolve_path(self, path: str) -> Path:
        """A path in the config: next to the config file if it exists there, else in the working directory."""
        return resolve_config_path(path, self.source_file)

    def build_config(self, styles: list[str]) -> BuildConfig:
        """The pipeline's `BuildConfig` for the benchmark's stages."""
        data = json.loads(json.dumps(self.pipeline))  # a deep copy that stays plain data
        queries = data.setdefault("queries", {})
        queries["per_style"] = {style: self.queries_per_style for style in styles}
        writer = queries.get("model", "query_writer")
        # The pipeline validates every stage's model; the benchmark never runs responses or gates.
        data["responses"] = {"chosen_model": writer, "rejected_model": writer, "refusal_model": writer}
        data["gates"] = {"judge_mode": "off"}
        data["output_dir"] = self.output_dir
        return BuildConfig.from_dict(data, source=self.source_file or "<dict>")


def load_benchmark_config(
    path: str | os.PathLike[str], overrides: dict[str, Any] | None = None
) -> BenchmarkConfig:
    """Load a SafeVidBench YAML config; ``overrides`` are top-level keys (``{"output_dir": ...}``)."""
    return load_config(path, BenchmarkConfig, overrides)


def read_video_ids(config: BenchmarkConfig) -> tuple[set[str], dict[str, int]]:
    """The content hashes to exclude, and how many came from each source."""
    ids: set[str] = set()
    per_source: dict[str, int] = {}
    for i, spec in enumerate(config.exclude.datasets):
        spec = {"split": "train", "query_column": "prompt", **spec}
        decon = from_dict(DecontaminationConfig, spec, f"exclude.datasets[{i}].")
        # The pipeline's decontamination reader: video ids from the column, or hashed from the video bytes.
        found = {
            video_id
            for video_id, _ in iter_video_ids_and_queries(decon, config.resolve_path, queries=False)
            if video_id
        }
        per_source[f"dataset:{decon.dataset}[{decon.split}]"] = len(found)
        ids |= found
    for file in config.exclude.video_id_files:
        path = config.resolve_path(file)
        found = set()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if len(line) != 64 or any(c not in "0123456789abcdef" for c in line.lower()):
                raise ValueError(f"{path}:{number}: {line!r} is not a SHA-256 video id (64 hex digits)")
            found.add(line.lower())
        per_source[f"file:{path}"] = len(found)
        ids |= found
    return ids, per_source


@dataclass
class BenchmarkResult:
    """What a build wrote: rows per split, coverage per (subcategory, style), exclusions, files."""

    output_dir: Path
    rows: dict[str, int]
    coverage: dict[str, dict[str, int]]
    missing: list[str]
    excluded_videos: int
    manifest: dict[str, Any]


def build_benchmark(
    config: BenchmarkConfig, *, progress: bool = False, backends: dict[str, Any] | None = None
) -> BenchmarkResult:
    """Run the pipeline stages, hold out training videos, select balanced items, write the dataset folder.

    Raises:
        RuntimeError: ``require_full_coverage`` and some requested (subcategory, style) cell is short.
        safevid.pipeline.manifest.ConfigChangedError: the folder holds a build of another pipeline config.
    """
    taxonomy = load_taxonomy(
        config.resolve_path(config.pipeline["taxonomy"]) if config.pipeline.get("taxonomy") else None
    )
    subcategories = _known(
        config.subcategories, taxonomy.subcategory_ids, taxonomy.subcategory, "subcategories"
    )
    styles = _known(config.styles, taxonomy.query_style_ids, taxonomy.query_style, "styles")
    build = config.build_config(styles)
    excluded_ids, exclude_sources = read_video_ids(config)

    run_build(build, stages=("ingest",), progress=progress, backends=backends)
    with RecordStore(store_path(build, 0, 1)) as store:
        marked = [
            Record(
                r.stage, r.key, r.video_id, DROPPED, EXCLUDED_REASON, {**r.data, "reason": EXCLUDED_REASON}
            )
            for r in store.iter_stage("video", OK)
            if r.key in excluded_ids
        ]
        store.put_many(marked)
    result = run_build(build, stages=BENCH_STAGES, progress=progress, backends=backends)
    if not result.complete:  # a benchmark written from part of its items would silently lose cells
        raise RuntimeError(
            f"Some records of the SafeVidBench build failed past their retries and stay pending "
            f"({result.store_path}; the errors are logged above): nothing was written. Fix the cause (e.g. a "
            "model server that is down) and rerun the same command: only the failed work is redone."
        )
    with RecordStore(store_path(build, 0, 1), readonly=True) as store:
        n_excluded = sum(1 for r in store.iter_stage("video", DROPPED) if r.reason == EXCLUDED_REASON)
        selected = _select(store, config, subcategories, styles, excluded_ids)
        coverage, missing = _coverage(selected, subcategories, styles, config)
        if missing and config.require_full_coverage:
            raise RuntimeError(
                f"SafeVidBench coverage is short in {len(missing)} (subcategory, style) cell(s) "
                f"(want {config.videos_per_subcategory * config.queries_per_style} items each): "
                f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}. Add videos that show these risks "
                "(inputs), lower videos_per_subcategory, or set require_full_coverage: false."
            )
        return _write(
            config,
            build,
            store,
            selected,
            taxonomy,
            result.manifest,
            coverage,
            missing,
            n_excluded,
            exclude_sources,
            len(excluded_ids),
        )


def _known(wanted: list[str] | None, known: tuple[str, ...], lookup: Any, what: str) -> list[str]:
    if wanted is None:
        return list(known)
    for value in wanted:
        try:
            lookup(value)
        except KeyError as e:
            raise ValueError(f"{what}: {e.args[0]}") from None
    return list(dict.fromkeys(wanted))


def _select(
    store: Any, config: BenchmarkConfig, subcategories: list[str], styles: list[str], excluded: set[str]
) -> list[Any]:
    """The query records of the selected (video, subcategory) groups, in (subcategory, video, style) order."""
    wanted_subs, wanted_styles = set(subcategories), set(styles)
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for record in store.iter_stage("query"):
        data = record.data
        if (
            data["subcategory"] in wanted_subs
            and data["query_style"] in wanted_styles
            and record.video_id not in excluded
        ):
            groups[(data["subcategory"], record.video_id)].append(record)
    votes: dict[tuple[str, str], int] = {}
    for record in store.iter_stage("classify"):
        for label in record.data["labels"]:
            votes[(label["subcategory"], record.key)] = label["votes"]
    selected = []
    for sub in subcategories:
        # Complete: every style the subcategory got queries for has all of them. A style with none is one the query
        # writer declined for this subcategory (e.g. harmful styles of a harmless look-alike); `_coverage` reports
        # it and `require_full_coverage` decides whether that is an error.
        complete = [
            (video_id, records)
            for (s, video_id), records in groups.items()
            if s == sub
            and set(Counter(r.data["query_style"] for r in records).values()) == {config.queries_per_style}
        ]
        complete.sort(key=lambda vr: (-votes.get((sub, vr[0]), 0), vr[0]))
        for _video_id, records in complete[: config.videos_per_subcategory]:
            selected += sorted(
                records, key=lambda r: (styles.index(r.data["query_style"]), r.data["variant"])
            )
    return selected


def _coverage(
    selected: list[Any], subcategories: list[str], styles: list[str], config: BenchmarkConfig
) -> tuple[dict[str, dict[str, int]], list[str]]:
    cells = Counter((r.data["subcategory"], r.data["query_style"]) for r in selected)
    want = config.videos_per_subcategory * config.queries_per_style
    coverage = {sub: {style: cells[(sub, style)] for style in styles} for sub in subcategories}
    missing = [
        f"{sub}×{style} ({n}/{want})"
        for sub in subcategories
        for style, n in coverage[sub].items()
        if n < want
    ]
    return coverage, missing


def _row(
    store: Any, record: Any, taxonomy: Any, config: BenchmarkConfig, sampling: dict[str, Any]
) -> dict[str, Any]:
    video = store.get("video", record.video_id).data
    describe = store.get("describe", record.video_id).data
    classify = store.get("classify", record.video_id).data
    data = record.data
    path = Path(video["path"])
    cell: Any = (
        {"bytes": path.read_bytes(), "path": f"{record.video_id}{video['suffix']}"}
        if config.embed_videos
        else str(path)
    )
    generators = {
        "describe": describe["generator"],
        "classify": classify["generator"],
        "query": data["generator"],
    }
    return {
        "id": record.key,
        "video": cell,
        "video_id": record.video_id,
        "prompt": data["query"],
        "domain": data["domain"],
        "subcategory": data["subcategory"],
        "severity": data["severity"],
        "query_style": data["query_style"],
        "is_benign_contrast": not taxonomy.query_style(data["query_style"]).harmful,
        "description": describe["description"],
        "rule_ids": list(data["rule_ids"]),
        "frame_timestamps": video["frame_timestamps"],
        "sampled_fps": video["sampled_fps"],
        "sampling": json.dumps(sampling, sort_keys=True),
        "generators": json.dumps(generators, sort_keys=True),
    }


def _write(
    config: BenchmarkConfig,
    build: Any,
    store: Any,
    selected: list[Any],
    taxonomy: Any,
    pipeline_manifest: dict[str, Any],
    coverage: dict[str, dict[str, int]],
    missing: list[str],
    n_excluded: int,
    exclude_sources: dict[str, int],
    n_exclude_ids: int,
) -> BenchmarkResult:
    # The pipeline's Parquet writer (bounded row groups) and folder swap: a killed write leaves the old output.
    output = Path(config.output_dir)
    staging = build.work_path / "safevidbench-staging"
    shutil.rmtree(staging, ignore_errors=True)
    schema = benchmark_features(config.embed_videos).arrow_schema
    writers = {
        split: ParquetShardWriter(staging / "data", split, schema, 1000, 32)
        for split in (HARMFUL_SPLIT, BENIGN_SPLIT)
    }
    counts: dict[str, Counter[str]] = {
        "domain": Counter(),
        "subcategory": Counter(),
        "query_style": Counter(),
    }
    sampling = build.video_sampling.to_dict()
    for record in selected:
        row = _row(store, record, taxonomy, config, sampling)
        writers[BENIGN_SPLIT if row["is_benign_contrast"] else HARMFUL_SPLIT].add(row)
        for column in counts:
            counts[column][row[column]] += 1
    files = {split: writer.close() for split, writer in writers.items()}
    rows = {split: writers[split].rows for split in writers}
    nbytes = {split: writers[split].bytes for split in writers}
    manifest = {
        **pipeline_manifest,
        "benchmark": {
            "rows": rows,
            "total": sum(rows.values()),
            "counts": {k: dict(sorted(v.items())) for k, v in counts.items()},
            "coverage": coverage,
            "missing_cells": missing,
            "videos": len({r.video_id for r in selected}),
            "videos_per_subcategory": config.videos_per_subcategory,
            "queries_per_style": config.queries_per_style,
            "exclusion": {
                "training_video_ids": n_exclude_ids,
                "sources": exclude_sources,
                "excluded_videos": n_excluded,
                "overlap_with_training": 0,
            },
        },
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    overlap = {r.video_id for r in selected} & _excluded_in(store)
    assert not overlap, (
        f"held-out videos selected: {sorted(overlap)[:3]}"
    )  # by construction; guards regressions
    (staging / MANIFEST_NAME).write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    _write_card(config, staging / "README.md", taxonomy, manifest, files, rows, nbytes)
    swap_in_staged(staging, output)
    return BenchmarkResult(output, rows, coverage, missing, n_excluded, manifest)


def _excluded_in(store: Any) -> set[str]:
    return {r.key for r in store.iter_stage("video", "dropped") if r.reason == EXCLUDED_REASON}


def _write_card(
    config: BenchmarkConfig,
    path: Path,
    taxonomy: Any,
    manifest: dict[str, Any],
    files: dict[str, list[Path]],
    rows: dict[str, int],
    nbytes: dict[str, int],
) -> None:
    from datasets import DatasetInfo, SplitDict, SplitInfo

    present = [s for s in (HARMFUL_SPLIT, BENIGN_SPLIT) if files[s]]
    globs = {s: f"data/{s}-*.parquet" for s in present}
    configs = {
        "default": {"data_files": [{"split": "test", "path": [globs[s] for s in present]}], "default": True},
        **{s: {"data_files": [{"split": "test", "path": globs[s]}]} for s in present},
    }
    features = benchmark_features(config.embed_videos)
    infos = {}
    for name, parts in [("default", present), *[(s, [s]) for s in present]]:
        splits = SplitDict()
        splits.add(
            SplitInfo(
                name="test", num_bytes=sum(nbytes[p] for p in parts), num_examples=sum(rows[p] for p in parts)
            )
        )
        infos[name] = DatasetInfo(features=features, splits=splits)
    total = sum(rows.values())
    header = card_metadata(
        license=config.license,
        pretty_name=config.pretty_name,
        tags=["safety", "benchmark", "video", "safevid", "over-refusal"],
        total=total,
        configs=configs,
        infos=infos,
    )
    render_card(
        path,
        header,
        template="safevidbench_card.md.jinja",
        card_template=config.resolve_path(config.card_template) if config.card_template else None,
        pretty_name=config.pretty_name,
        repo_id=config.repo_id or f"<org>/{Path(config.output_dir).name}",
        total=total,
        rows=rows,
        bench=manifest["benchmark"],
        taxonomy=taxonomy,
        models=manifest.get("models", {}),
        prompts=manifest.get("prompts", {}),
        sampling=json.dumps(config.pipeline.get("sampling", {}), sort_keys=True),
        fingerprint=manifest.get("fingerprint", ""),
        embed_videos=config.embed_videos,
    )


def push_benchmark(folder: str | os.PathLike[str], repo_id: str, *, private: bool = False) -> Any:
    """Push a built SafeVidBench folder to a Hub dataset repo (resumable; the card goes last)."""
    return push_to_hub(folder, repo_id, private=private)
