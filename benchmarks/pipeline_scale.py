"""Scale of the build pipeline's own bookkeeping: pairs/s and peak memory at 10k, 50k and 350k pairs.

An instant in-process backend (this benchmark only: every request answered at once, deterministically)
replaces the models, so what is measured is the pipeline itself: content hashing and record keys, the
SQLite record store, structured-output validation of every choice, the vote tally, the quality gates
(judge verdicts in ``record`` mode, MinHash near-duplicate index), and Parquet shard writing (videos
referenced, not embedded). The synthetic videos are records pointing at one real file (ingest and
describe decode real video only once: decoding is not the pipeline's bookkeeping). Then the result is
loaded and iterated with ``load_dataset`` and, side by side, read directly with pyarrow.

Each size runs in a fresh subprocess so each peak RSS is its own.

    .venv/bin/python benchmarks/pipeline_scale.py                       # 10k, 50k, 350k
    .venv/bin/python benchmarks/pipeline_scale.py --sizes 10000 50000   # a quicker look

Targets: peak RSS flat across sizes and under 2 GB at 350k; load-and-iterate within 1.5x of pyarrow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAIRS_PER_VIDEO = 30  # 3 labels x 10 queries per (video, label)
_WORDS = ["video", "clip", "person", "street", "knife", "car", "smoke", "crowd", "door", "light", "hand", "bottle", "stair", "roof", "fire", "bag", "phone", "window", "road", "water", "table", "glass", "metal", "rope", "step", "minute", "left", "right", "fast", "slow", "near", "far"]  # fmt: skip


def _instant_backend():
    from safevid.backends import BackendConfig, ChatResult, Choice, Usage
    from safevid.backends.base import Backend

    class InstantBackend(Backend):
        """Answers every request immediately: a choice by seed, or ~24 words hashed from the prompt."""

        kind = "instant"

        def __init__(self) -> None:
            super().__init__(BackendConfig(kind="openai", model="instant", cache=False))

        def _generate(self, requests, hooks) -> None:
            for i, request in enumerate(requests):
                seed, n = request.sampling.seed or 0, request.sampling.n
                if request.structured is not None and request.structured.choice is not None:
                    options = request.structured.choice
                    skip = 1 if options[0] == "benign" else 0  # classification: always three labels
                    texts = [options[skip + (seed + k) % (len(options) - skip)] for k in range(n)]
                else:
                    content = request.messages[-1]["content"]
                    prompt = content if isinstance(content, str) else content[-1]["text"]
                    digest = hashlib.sha256(f"{seed}|{prompt}".encode()).digest()
                    texts = [" ".join(_WORDS[b % len(_WORDS)] for b in digest[:24])] * n
                hooks.finish(
                    i, ChatResult(request.id, [Choice(t, "stop") for t in texts], Usage(), model="instant")
                )

    return InstantBackend()


def _config(work: Path, video_folder: Path) -> dict:
    spec = {"kind": "openai", "model": "instant"}
    return {
        "models": {"describer": spec, "llm": spec},
        "inputs": [{"folder": str(video_folder)}],
        "output_dir": str(work / "out"),
        "sampling": {"num_frames": 4},
        "describe": {"model": "describer"},
        "classify": {"model": "llm", "votes": 3, "min_votes": 1, "max_labels": 3, "rule_votes": 2, "batch_size": 256},
        "queries": {"model": "llm", "batch_size": 1024},
        "responses": {"chosen_model": "llm", "rejected_source": "comply", "rejected_model": "llm",
                      "refusal_model": "llm", "batch_size": 1024},
        "gates": {"judge_mode": "record", "judge_model": "llm", "batch_size": 1024},
        "publish": {"embed_videos": False, "rows_per_shard": 20000, "rows_per_row_group": 1000},
    }  # fmt: skip


def _seed_videos(store_path: Path, video: Path, count: int) -> None:
    """Synthetic video and description records (all referencing one real file)."""
    from safevid.pipeline.store import OK, Record, RecordStore

    generator = {"model": "instant", "revision": None, "kind": "openai", "prompt_sha": None}
    with RecordStore(store_path) as store:
        batch = []
        for i in range(count):
            video_id = hashlib.sha256(f"synthetic-{i}".encode()).hexdigest()
            data = {"video_id": video_id, "source": f"synthetic-{i}", "path": str(video), "suffix": ".mp4",
                    "size_bytes": video.stat().st_size, "probe": {}, "frame_timestamps": [0.1, 0.3, 0.5, 0.7],
                    "sampled_fps": 5.0, "duration": 1.0}  # fmt: skip
            words = " ".join(_WORDS[(i * 7 + k) % len(_WORDS)] for k in range(60))
            batch.append(Record("video", video_id, video_id, OK, None, data))
            batch.append(Record("describe", video_id, video_id, OK, None, {"description": f"{i}: {words}",
                                                                          "generator": generator}))  # fmt: skip
            if len(batch) >= 4000:
                store.put_many(batch)
                batch = []
        store.put_many(batch)


def child(size: int, work: Path) -> dict:
    from safevid.pipeline import BuildConfig, run_build
    from safevid.pipeline.run import store_path
    from safevid.testing.videos import make_test_video

    folder = work / "videos"
    video = make_test_video(folder / "real.mp4", duration=1.0, fps=5.0)
    config = BuildConfig.from_dict(_config(work, folder))
    videos = max(1, size // PAIRS_PER_VIDEO - 1)  # the real video brings its own 30
    _seed_videos(store_path(config, 0, 1), video, videos)
    backend = _instant_backend()
    start = time.perf_counter()
    result = run_build(config, backends={"describer": backend, "llm": backend})
    build_s = time.perf_counter() - start
    build_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pairs = result.publish.rows["train"]

    import pyarrow.parquet as pq
    from datasets import load_dataset

    files = sorted(str(p) for p in (Path(config.output_dir) / "data" / "default").glob("*.parquet"))
    start = time.perf_counter()
    rows = 0
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1000):
            rows += len(batch.to_pydict()["id"])
    arrow_s = time.perf_counter() - start
    start = time.perf_counter()
    dataset = load_dataset(str(Path(config.output_dir)), split="train")
    loaded = sum(len(batch["id"]) for batch in dataset.iter(batch_size=1000))
    datasets_s = time.perf_counter() - start
    start = time.perf_counter()
    streamed = sum(len(batch["id"]) for batch in load_dataset(str(Path(config.output_dir)), split="train",
                                                             streaming=True).iter(batch_size=1000))  # fmt: skip
    streaming_s = time.perf_counter() - start
    assert rows == loaded == streamed == pairs, (rows, loaded, streamed, pairs)
    return {
        "size": size,
        "pairs": pairs,
        "build_s": build_s,
        "pairs_per_s": pairs / build_s,
        "peak_rss_mb": build_peak_mb,
        "pyarrow_s": arrow_s,
        "load_dataset_s": datasets_s,
        "streaming_s": streaming_s,
        "dropped": result.publish.dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 350_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, Path(args.work))))
        return
    results = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix=f"safevid-scale-{size}-") as work:
            env = {**os.environ, "HF_DATASETS_CACHE": str(Path(work) / "hf-datasets"), "HF_HUB_OFFLINE": "1",
                   "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
            done = subprocess.run([sys.executable, __file__, "--child", str(size), "--work", work], env=env,
                                  capture_output=True, text=True)  # fmt: skip
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                sys.exit(f"size {size} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            results.append(json.loads(lines[0].removeprefix("RESULT ")))
            r = results[-1]
            print(
                f"{size}: {r['pairs']} pairs in {r['build_s']:.1f}s, peak {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    print()
    print(
        "| pairs | build s | pairs/s | peak RSS MB | pyarrow read s | load_dataset+iter s | ratio | streaming s | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['pairs']} | {r['build_s']:.1f} | {r['pairs_per_s']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['pyarrow_s']:.2f} | {r['load_dataset_s']:.2f} | {r['load_dataset_s'] / r['pyarrow_s']:.2f}x | "
            f"{r['streaming_s']:.2f} | {r['streaming_s'] / r['pyarrow_s']:.2f}x |"
        )
    peaks = [r["peak_rss_mb"] for r in results]
    print(f"\npeak RSS growth {peaks[0]:.0f} -> {peaks[-1]:.0f} MB ({peaks[-1] / peaks[0]:.2f}x) over "
          f"{results[-1]['pairs'] / results[0]['pairs']:.0f}x the pairs")  # fmt: skip


if __name__ == "__main__":
    main()
