"""The benchmark's videos for the harness: each (video, sampling) decoded once per machine, prepared ahead.

SafeVidBench asks several prompts per video (one per query style), and every model evaluated decodes the same
videos. `prepared_videos` turns the pending rows into one `BenchmarkVideo` per frame-store key
(`safevid.video.frame_store.frame_key` of the SHA-256 of the resolved video's bytes, never of the row's ``video_id``,
and the effective sampling), prepared in a `safevid.video.pool.DecodePool` with
`safevid.backends.prepared.prepare_video`: the frames come from the run's frame store (``frames_dir``), decoded and
stored only when the entry is missing, and are encoded for the wire in the worker for an HTTP backend. So rows
sharing a video decode it once, a rerun or another model's run decodes nothing, and a store that a SafeVidBench
build's ingest wrote (``<work_dir>/frames``) serves its rows directly (their ``video_id`` is the SHA-256 of the
video and their ``sampling`` the build's, the key ingest stored them under).

Video cells are resolved (`safevid.video.references.VideoReferences`: downloads, archive extraction) in the main
process, as the rows are read; decoding and encoding run in the pool, at most ``ahead`` videos in advance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from safevid.backends.prepared import PREPARE_VIDEO, PreparedVideo, ablated
from safevid.video.frame_store import content_sha256, frame_key, stored_video, video_identity


@dataclass
class BenchmarkVideo:
    """One video of the benchmark, sampled one way, and the pending rows that ask about it.

    Attributes:
        key (`str`): its frame store key.
        identity (`str`): the SHA-256 of the resolved video's bytes (`content_sha256`).
        source (`bytes` or `Path`): the resolved video, decoded if the store has no entry.
        sampling (`VideoSampling`): the effective sampling (the row's, with the run's overrides).
        rows (`list[dict]`): the rows, without their video cell.
    """

    key: str
    identity: str
    source: bytes | Path
    sampling: Any
    rows: list[dict[str, Any]]


def prepared_videos(
    rows: Iterable[dict[str, Any]],
    *,
    pool: Any,
    frames_dir: Path,
    references: Any,
    sampling_of: Callable[[dict[str, Any]], Any],
    encoding: dict[str, str] | None,
    ablation: str | None,
    ablation_seed: int,
    failures: list[dict[str, Any]],
) -> Iterator[tuple[BenchmarkVideo, PreparedVideo | BaseException]]:
    """``(video, prepared or the exception that prevented it)`` per video of ``rows``, in completion order.

    Args:
        rows: The pending benchmark rows (read lazily).
        pool (`DecodePool`): where the videos are prepared.
        frames_dir (`Path`): the frame store.
        references (`VideoReferences`): resolves the rows' video cells; a row whose cell it refuses is appended to
            ``failures`` (``{"id", "error"}``) and skipped.
        sampling_of: The effective `VideoSampling` of a row.
        encoding: The backend's `media_encoding()`; `None` (a local engine): the frames are memory-mapped from the
            store in this process (``PreparedVideo.sampled``).
        ablation: The run's ``video_ablation`` (`safevid.backends.prepared.ablated`), or `None`.
        ablation_seed: The run's ``video_ablation_seed``; with the video's identity it seeds ``shuffle``.
        failures: Where unresolvable rows are recorded.
    """
    from safevid.video import VideoDecodeError
    from safevid.video.references import VideoReferenceError

    # The video being read and those submitted but not consumed yet: a row about one of them joins it instead of
    # preparing it again. A video is submitted once the row after its last adjacent one is read, so the prompts
    # of one video (adjacent in SafeVidBench) always share one preparation.
    preparing: dict[str, BenchmarkVideo] = {}

    def videos() -> Iterator[BenchmarkVideo]:
        current: BenchmarkVideo | None = None
        for row in rows:
            sampling = sampling_of(row)
            try:
                source = references.resolve(row["video"], row_name=f"id={row['id']}")
            except VideoReferenceError as error:
                failures.append({"id": row["id"], "error": f"video: {error}"})
                continue
            # The SHA-256 of the bytes, never the row's `video_id`: a benchmark reusing another's ids with other
            # videos must not read (or write) the other's frames. A SafeVid build's ids are this hash, so a
            # build's store still serves its benchmark.
            identity = content_sha256(source) or video_identity(source)
            key = frame_key(identity, sampling)
            row = {name: value for name, value in row.items() if name != "video"}  # the bytes are in `source`
            if key in preparing:
                preparing[key].rows.append(row)
                continue
            if current is not None:
                yield current
            current = preparing[key] = BenchmarkVideo(key, identity, source, sampling, [row])
        if current is not None:
            yield current

    results = pool.imap_unordered(
        PREPARE_VIDEO,
        videos(),
        lambda v: (
            str(frames_dir),
            v.identity,
            v.source,
            v.sampling.to_dict(),
            encoding,
            ablation,
            _seed(ablation_seed, v),
        ),
        name_of=lambda v: (
            str(v.source) if isinstance(v.source, Path) else f"the video of id={v.rows[0]['id']}"
        ),
    )
    for video, outcome in results:
        del preparing[video.key]  # its rows are final: the next row about it reads the store
        if isinstance(outcome, PreparedVideo) and outcome.parts is None:
            try:  # the worker stored the frames: memory-map them here
                sampled, _ = stored_video(frames_dir, video.identity, video.source, video.sampling.to_dict())
            except VideoDecodeError as error:
                outcome = error
            else:
                outcome = replace(outcome, sampled=ablated(sampled, ablation, _seed(ablation_seed, video)))
        yield video, outcome


def _seed(ablation_seed: int, video: BenchmarkVideo) -> str:
    """The seed of one video's ``shuffle``: the run's seed and the video's identity (its own order, every rerun)."""
    return f"{ablation_seed}|{video.identity}"
