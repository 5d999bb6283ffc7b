"""Build throughput at scale: does each stage keep its model server busy?

Side by side in one run, against `FaultInjectingServer` in latency-only mode with heavy-tailed
(log-normal) latencies, and real decoding of generated 720p H.264 clips:

(a) **describe**: the streamed stage (decode worker pool + streamed requests) in videos/s, against its
    ceiling ``min(server ideal = concurrency / mean latency, decode ceiling)``, the decode ceiling
    being the measured videos/s of the worker pool preparing the requests on this machine, without
    a server; and the batch loop this replaced (decode in the main process, one batch of requests,
    wait for its slowest answer, repeat), for the before/after ratio.
(b) **text stage**: streamed requests/s against the server ideal, and the batch loop.
(c) **decode work**: a real ingest → describe over the clips, counting decodes per video (ingest
    decodes each clip once; describe reads the frames back from the frame store).

Peak RSS of the main process is reported after each part. The videos of (a) are the clips' records
repeated under distinct ids (with the frame-store entries ingest would have left), so the server sees
more videos than it has slots without encoding hundreds of clips.

    python benchmarks/build_throughput.py          # a few minutes
    python benchmarks/build_throughput.py --full   # the issue's size (16 clips of 20 s, 512 videos, 128 in flight)

Targets: describe >= 0.85 of its ceiling; text stage >= 0.85 of the server ideal; one decode per video.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import resource
import tempfile
import time
from pathlib import Path
from typing import Any


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _config(root: Path, clips: Path, url: str, describe_c: int, text_c: int, workers: int | None) -> Any:
    from safevid.pipeline import BuildConfig

    def model(c: int) -> dict[str, Any]:
        return {"kind": "openai", "model": "latency-only", "base_url": url, "max_concurrency": c,
                "cache": False, "structured_outputs": "none", "timeout_s": 600}  # fmt: skip

    return BuildConfig.from_dict(
        {
            "models": {"describer": model(describe_c), "llm": model(text_c)},
            "inputs": [{"folder": str(clips)}],
            "output_dir": str(root / "out"),
            "sampling": {"num_frames": 16},
            "decode_workers": workers,
            "describe": {"model": "describer"},
            "classify": {"model": "llm"},
            "queries": {"model": "llm"},
            "responses": {"chosen_model": "llm", "rejected_model": "describer", "refusal_model": "llm"},
            "gates": {"judge_model": "llm", "judge_mode": "off"},
        }
    )


class _DecodeCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the issue's size (tens of minutes)")
    parser.add_argument("--workers", type=int, default=None, help="decode workers (default: CPU count)")
    args = parser.parse_args()
    clips_n, clip_s, videos, describe_c, text_n, text_c, baseline_videos = (
        (16, 20.0, 512, 128, 20000, 128, 64) if args.full else (4, 10.0, 128, 32, 3000, 64, 16)
    )
    describe_median, text_median, sigma = 2.0, 0.3, 0.6
    mean_factor = math.exp(sigma**2 / 2)

    from safevid.backends import ChatRequest, SamplingParams, make_backend
    from safevid.backends.prepared import PREPARE_VIDEO
    from safevid.pipeline.batching import chunks, run_streamed
    from safevid.pipeline.context import BuildContext
    from safevid.pipeline.describe import run_describe
    from safevid.pipeline.frames import frames_root
    from safevid.pipeline.ingest import run_ingest
    from safevid.pipeline.store import OK, Record, RecordStore
    from safevid.testing.server import FaultConfig, FaultInjectingServer
    from safevid.testing.videos import make_test_video
    from safevid.video import sample_video
    from safevid.video.frame_store import FrameStore, frame_key
    from safevid.video.pool import DecodePool, default_decode_workers

    workers = args.workers or default_decode_workers()
    counter = _DecodeCount()
    logging.getLogger("safevid.pipeline.describe").addHandler(counter)
    logging.getLogger("safevid.pipeline.describe").setLevel(logging.INFO)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, FaultInjectingServer(latency_only=True) as server:
        root = Path(tmp)
        clips = root / "clips"
        for i in range(clips_n):
            make_test_video(clips / f"clip{i:02d}.mp4", width=1280, height=720, duration=clip_s + i / 10, fps=30.0,
                            gop_seconds=2.0)  # fmt: skip
        config = _config(root, clips, server.base_url, describe_c, text_c, args.workers)
        ctx = BuildContext(config)
        sampling = config.video_sampling
        store = RecordStore(config.work_path / "shard.sqlite")

        # (c) a real ingest then describe over the clips: decodes per video.
        server.faults = FaultConfig(latency_s=0.01)
        start = time.perf_counter()
        run_ingest(ctx, store)
        ingest_s = time.perf_counter() - start
        run_describe(ctx, store)
        ingested = list(store.iter_stage("video"))
        frame_entries = len(FrameStore(frames_root(ctx)).keys())
        describe_log = counter.messages[-1]
        rows.append(("ingest (serial, exact seeks): videos/s", f"{clips_n / ingest_s:.2f}", ""))
        rows.append(("decodes per video: ingest / describe", f"{frame_entries / len(ingested):.0f} / "
                     f"{describe_log.split(', ')[1].split()[0]}/{len(ingested)}", describe_log))  # fmt: skip

        # (a) describe at scale: the clips' records under distinct ids, with their frame-store entries.
        frame_store = FrameStore(frames_root(ctx))
        scaled: list[Record] = []
        for i in range(videos):
            clip = ingested[i % len(ingested)]
            video_id = hashlib.sha256(f"{clip.key}|{i}".encode()).hexdigest()
            frames, metadata = frame_store.load(frame_key(clip.key, sampling))
            frame_store.put(frame_key(video_id, sampling), frames, metadata)
            scaled.append(Record("video", video_id, video_id, OK, None, {**clip.data, "video_id": video_id}))
        store.put_many(scaled)
        encoding = ctx.backend("describer").media_encoding()
        with DecodePool(workers) as pool:
            list(pool.imap_unordered(PREPARE_VIDEO, scaled[:workers],
                                     lambda v: (str(frames_root(ctx)), v.key, v.data["path"], sampling.to_dict(), encoding)))  # fmt: skip
            start = time.perf_counter()
            for _ in pool.imap_unordered(
                PREPARE_VIDEO,
                scaled,
                lambda v: (str(frames_root(ctx)), v.key, v.data["path"], sampling.to_dict(), encoding),
            ):
                pass
            decode_ceiling = videos / (time.perf_counter() - start)
            server_ideal = describe_c / (describe_median * mean_factor)
            ceiling = min(server_ideal, decode_ceiling)
            server.faults = FaultConfig(latency_s=describe_median, latency_sigma=sigma, seed=1)
            store.conn.execute("DELETE FROM records WHERE stage = 'describe'")
            start = time.perf_counter()
            run_describe(ctx, store, pool=pool)  # its workers started: a long build pays that once
            streamed = store.count("describe") / (time.perf_counter() - start)
        rss_describe = _peak_rss_mb()

        # The batch loop this replaced: decode in the main process, send the batch, wait for its slowest.
        backend = ctx.backend("describer")
        from safevid.backends import text_part, video_part

        start = time.perf_counter()
        for batch in chunks(scaled[:baseline_videos], 32):
            requests = [
                ChatRequest(
                    [
                        {
                            "role": "user",
                            "content": [
                                video_part(sample_video(v.data["path"], sampling)),
                                text_part("Describe."),
                            ],
                        }
                    ],
                    SamplingParams(max_tokens=8),
                )
                for v in batch
            ]
            backend.generate(requests, progress=False)
        batch_rate = baseline_videos / (time.perf_counter() - start)
        rows += [
            (
                f"describe: server ideal ({describe_c} in flight / mean {describe_median * mean_factor:.2f} s)",
                f"{server_ideal:.2f} videos/s",
                "",
            ),
            (
                f"describe: decode ceiling ({workers} workers, frames from the store + JPEG)",
                f"{decode_ceiling:.2f} videos/s",
                "",
            ),
            (
                f"describe: streamed, {videos} videos",
                f"{streamed:.2f} videos/s",
                f"{streamed / ceiling:.2f} of ceiling {ceiling:.2f}",
            ),
            (
                f"describe: batch loop (before), {baseline_videos} videos",
                f"{batch_rate:.2f} videos/s",
                f"streamed is {streamed / batch_rate:.1f}x",
            ),
            ("peak RSS after describe (main process)", f"{rss_describe:.0f} MB", ""),
        ]

        # (b) a text stage.
        server.faults = FaultConfig(latency_s=text_median, latency_sigma=sigma, seed=2)
        text_backend = make_backend(kind="openai", model="latency-only", base_url=server.base_url,
                                    max_concurrency=text_c, cache=False, structured_outputs="none")  # fmt: skip
        ideal = text_c / (text_median * mean_factor)

        def unit(i: int):
            request = ChatRequest([{"role": "user", "content": f"query {i}"}], SamplingParams(max_tokens=8))
            [result] = yield [(text_backend, request)]
            return [Record("bench", f"{i:08d}", "v", OK, None, {"ok": result.ok})]

        start = time.perf_counter()
        run_streamed(ctx, store, "bench", (unit(i) for i in range(text_n)), commit_every=256)
        text_streamed = text_n / (time.perf_counter() - start)
        start = time.perf_counter()
        for batch in chunks(range(text_n), 256):
            text_backend.generate([ChatRequest([{"role": "user", "content": f"query {i}"}],
                                               SamplingParams(max_tokens=8)) for i in batch], progress=False)  # fmt: skip
        text_batch = text_n / (time.perf_counter() - start)
        rows += [
            (
                f"text stage: server ideal ({text_c} in flight / mean {text_median * mean_factor:.2f} s)",
                f"{ideal:.1f} req/s",
                "",
            ),
            (
                f"text stage: streamed, {text_n} requests",
                f"{text_streamed:.1f} req/s",
                f"{text_streamed / ideal:.2f} of ideal",
            ),
            (
                "text stage: batch loop (before), batches of 256",
                f"{text_batch:.1f} req/s",
                f"streamed is {text_streamed / text_batch:.1f}x",
            ),
            ("peak RSS at the end (main process)", f"{_peak_rss_mb():.0f} MB", ""),
        ]
        store.close()
        ctx.close()
    print(f"{clips_n} clips of {clip_s:.0f} s 1280x720 H.264 at 30 fps, 16 frames each, exact seeks; "
          f"log-normal latencies (sigma {sigma}); {workers} decode workers\n")  # fmt: skip
    print("| measurement | value | note |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
