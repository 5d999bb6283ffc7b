"""Answering a benchmark: its rows read, their videos prepared once per machine, the model's answers streamed.

Videos are sampled with the benchmark row's own `VideoSampling` (the one its description was written from),
with the run's ``sampling`` fields merged onto it field by field as training does (``--num-frames 4`` keeps the
row's pixel budget and decoder); every answer line records the sampling it used.

**Frames.** Each (video, sampling) is decoded once per machine into a frame store (``frames_dir``; by default the
one training uses), in ``decode_workers`` processes ahead of the requests, which also encode the frames for an HTTP
backend (`safevid.evaluation.videos`). Rows sharing a video decode it once, a rerun or another model's run decodes
nothing, and ``frames_dir: <work_dir>/frames`` reuses the frames a SafeVidBench build's ingest decoded. The
requests stream to the backend up to its concurrency on the scheduler the build's stages use
(`safevid.backends.scheduler`), each sent as soon as its video is ready; answers are appended in groups of
``batch_size``, in the order they finish.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safevid.evaluation.run import ANSWERS, FAILURES, append_jsonl, checkpoints, read_jsonl, write_failures

if TYPE_CHECKING:
    from safevid.evaluation.config import EvalConfig

logger = logging.getLogger(__name__)

__all__ = ["answer_line", "benchmark_references", "generate_answers", "load_benchmark", "row_sampling"]

# What an answered video's work returns per row: an answer line, or a failure ({"id", "error"}).
ANSWER, FAILURE = "answer", "failure"


def load_benchmark(config: EvalConfig) -> Any:
    """The benchmark split, with the video column left undecoded (bytes/path: sampled by safevid)."""
    from datasets import Video

    from safevid.datasets_io import load_split

    dataset = load_split(config.benchmark, config.benchmark_config, split=config.split)
    required = {"id", "video", "prompt", "subcategory", "query_style", "description"}
    missing = sorted(required - set(dataset.column_names))
    if missing:
        raise ValueError(
            f"Benchmark {config.benchmark} lacks column(s) {missing}; columns: {dataset.column_names}"
        )
    dataset = dataset.cast_column("video", Video(decode=False))
    if config.limit is not None:
        dataset = dataset.select(range(min(config.limit, len(dataset))))
    ids = dataset["id"]
    if len(set(ids)) != len(ids):
        raise ValueError(f"Benchmark {config.benchmark} has duplicate ids: a run could not resume by id")
    return dataset


def benchmark_references(config: EvalConfig) -> Any:
    """How the benchmark's video cells resolve: relative paths inside its folder (a local copy) or its Hub
    repository, absolute ones and ``..`` only under ``config.allowed_local_media_path``."""
    from safevid.video.references import VideoReferences

    local = Path(config.benchmark).expanduser()
    return VideoReferences(
        dataset_dir=str(local) if local.exists() else None,
        hub_dataset=None if local.exists() else config.benchmark,
        allowed_local_media_path=tuple(config.allowed_local_media_path),
    )


def generate_answers(
    config: EvalConfig,
    dataset: Any,
    *,
    backend: Any = None,
    progress: bool = False,
    references: Any = None,
    pool: Any = None,
) -> dict[str, int]:
    """Answer every benchmark item not answered yet; returns counts.

    Each row's video cell is resolved by ``references`` (a `safevid.video.references.VideoReferences`; default
    `benchmark_references`): a cell it refuses or cannot find, or a video that does not decode, fails that item,
    named in the failures file. The frames come from ``config.frames_path``, decoded there first when missing
    (`safevid.evaluation.videos`).

    Args:
        config: The run.
        dataset: The benchmark rows (``id``, ``video``, ``prompt``... ; ``video_id`` and ``sampling`` if any).
        backend: A ready `safevid.backends.Backend` (else built from ``config.model``).
        progress: Show a progress bar of the answers.
        references: How the video cells resolve.
        pool: A `safevid.video.pool.DecodePool` to prepare the videos in (kept open); by default one of
            ``config.decode_workers`` processes, started for the run and closed after it.

    Returns:
        ``already_answered``, ``answered``, ``failed``, and ``videos_decoded`` / ``videos_from_store``: the
        videos (per sampling) this run decoded, and those it read back from the frame store.
    """
    from safevid.backends import make_backend
    from safevid.backends.scheduler import chunks, stream_units
    from safevid.evaluation.videos import prepared_videos
    from safevid.video.pool import DecodePool

    out = Path(config.output_dir)
    answers_path = out / ANSWERS
    done = {row["id"] for row in read_jsonl(answers_path, repair=True)}
    pending = (row for row in dataset if row["id"] not in done)
    backend = backend or make_backend(config.model)
    references = references or benchmark_references(config)
    counts = {
        "already_answered": len(done),
        "answered": 0,
        "failed": 0,
        "videos_decoded": 0,
        "videos_from_store": 0,
    }
    failures: list[dict[str, Any]] = []
    first = next(pending, None)
    if first is not None:
        with contextlib.ExitStack() as stack:
            if pool is None:
                # A benchmark's rows share their sampling: the first row's decode time limit bounds every decode.
                timeout_s = row_sampling(config, first).timeout_s
                pool = stack.enter_context(DecodePool(config.decode_workers, timeout_s))
            videos = prepared_videos(
                itertools.chain([first], pending),
                pool=pool,
                frames_dir=config.frames_path,
                references=references,
                sampling_of=lambda row: row_sampling(config, row),
                encoding=backend.media_encoding(),
                ablation=config.video_ablation,
                ablation_seed=config.video_ablation_seed,
                failures=failures,
            )
            checkpoint = checkpoints()

            def commit(done: list[tuple[str, dict[str, Any]]]) -> None:
                failures.extend(line for kind, line in done if kind == FAILURE)
                for lines in chunks((line for kind, line in done if kind == ANSWER), config.batch_size):
                    append_jsonl(answers_path, lines)  # batch_size per write: what a kill can leave half-done
                    counts["answered"] += len(lines)
                    checkpoint("answers:commit")

            stream_units(
                (_answer_video(config, backend, video, prepared, counts) for video, prepared in videos),
                commit,
                deliver_every=config.batch_size,
                progress="answers" if progress else None,
            )
    counts["failed"] = len(failures)
    write_failures(out / FAILURES, failures, "failed to generate")
    logger.info(
        "generation: %d video(s) read from the frame store %s, %d decoded into it",
        counts["videos_from_store"],
        config.frames_path,
        counts["videos_decoded"],
    )
    return counts


def _answer_video(
    config: EvalConfig, backend: Any, video: Any, prepared: Any, counts: dict[str, int]
) -> Generator[Any, Any, list[tuple[str, dict[str, Any]]]]:
    """The work of one prepared video (`safevid.backends.scheduler.Work`): one request per row that asks about
    it, sent together; each row's answer line, or its failure."""
    from safevid.backends import ChatRequest, SamplingParams, text_part, video_part
    from safevid.video import VideoDecodeError

    if isinstance(prepared, VideoDecodeError):
        return [(FAILURE, {"id": row["id"], "error": f"video: {prepared}"}) for row in video.rows]
    if isinstance(prepared, BaseException):
        raise prepared
    counts["videos_decoded" if prepared.decoded else "videos_from_store"] += 1
    params = SamplingParams(**config.generation)
    frames = prepared.parts if prepared.parts is not None else [video_part(prepared.sampled)]
    requests = [
        (
            backend,
            ChatRequest(
                [{"role": "user", "content": [*frames, text_part(row["prompt"])]}], params, id=row["id"]
            ),
        )
        for row in video.rows
    ]
    results = yield requests
    model_info = {"name": config.display_name, **config.generation_identity()["model"]}
    return [
        (ANSWER, answer_line(config, row, video.sampling, prepared, result, params, model_info))
        if result.ok
        else (FAILURE, {"id": row["id"], "error": str(result.error)})
        for row, result in zip(video.rows, results, strict=True)
    ]


def answer_line(
    config: EvalConfig,
    row: dict[str, Any],
    sampling: Any,
    prepared: Any,
    result: Any,
    params: Any,
    model_info: dict[str, Any],
) -> dict[str, Any]:
    """The ``answers.jsonl`` line of one answered row."""
    choice = result.choices[0]
    return {
        "id": row["id"],
        "video_id": row.get("video_id"),
        "domain": row.get("domain"),
        "subcategory": row["subcategory"],
        "query_style": row["query_style"],
        "prompt": row["prompt"],
        "description": row["description"],
        "response": choice.text,
        "finish_reason": choice.finish_reason,
        "usage": {
            "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens,
        },
        "model": {**model_info, "served_model": result.model},
        "generation": params.to_dict(),
        "video_sampling": sampling.to_dict(),
        "video_ablation": config.video_ablation,
        **({"video_ablation_seed": config.video_ablation_seed} if config.video_ablation == "shuffle" else {}),
        "frame_timestamps": list(prepared.metadata["timestamps"]),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def row_sampling(config: EvalConfig, row: dict[str, Any]) -> Any:
    """A row's effective `VideoSampling`: the row's own (what its description was written from), with the run's
    overrides merged on field by field."""
    from safevid.video import VideoSampling

    own = VideoSampling.from_dict(json.loads(row["sampling"])) if row.get("sampling") else VideoSampling()
    return own.overridden(config.sampling or {})
