"""Benchmark: seeking sampler vs decode-all vs transformers' `load_video`, side by side.

Samples 8/16/32 frames from H.264 videos (640x360 and 1280x720, 30 s and 120 s, 30 fps,
a keyframe every 2 s as streaming encoders use) and prints a Markdown table of median times
and ratios. Videos are generated once into ``$SAFEVID_HOME/bench-videos``.

    python benchmarks/video_sampling.py [--repeats 3] [--sizes 640x360,1280x720] [--durations 30,120]

Compared, on the same files and frame counts, all in this process:
- ``safevid``: `sample_video` with the default `VideoSampling` (torchcodec, exact seeks).
- ``safevid pyav``: the same with the PyAV backend.
- ``decode-all``: torchcodec decoding every frame, then picking the same frames.
- ``transformers``: ``transformers.video_utils.load_video(path, num_frames=n, backend=...)``
  with its torchcodec backend (and its default PyAV backend on the 30 s videos only, as it
  decodes up to the last requested frame and is slow on long videos).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from safevid.paths import safevid_home
from safevid.testing.videos import make_test_video
from safevid.video import VideoSampling, sample_video


def bench_video(size: str, seconds: int) -> Path:
    width, height = (int(x) for x in size.split("x"))
    path = safevid_home() / "bench-videos" / f"h264_{size}_{seconds}s_gop2_exact.mp4"
    if not path.exists():
        started = time.perf_counter()
        tmp = path.with_suffix(".partial.mp4")
        make_test_video(
            tmp,
            width=width,
            height=height,
            duration=seconds,
            fps=30.0,
            pattern="textured",
            gop_seconds=2.0,
            exact_gop=True,
        )
        tmp.rename(path)
        print(f"generated {path.name} in {time.perf_counter() - started:.1f} s")
    return path


def timed(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per function, running them round-robin so load on a shared box hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def decode_all(path: Path, num_frames: int) -> object:
    """Decode every frame in order (in chunks, to bound memory) and keep the `num_frames` wanted."""
    import torch
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), seek_mode="exact")
    total = len(decoder)
    wanted = {int((i + 0.5) * total / num_frames) for i in range(num_frames)}
    kept = []
    for start in range(0, total, 128):
        chunk = decoder.get_frames_in_range(start, min(start + 128, total)).data
        kept += [chunk[i - start] for i in sorted(wanted) if start <= i < start + 128]
    return torch.stack(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="640x360,1280x720")
    parser.add_argument("--durations", default="30,120")
    parser.add_argument("--frames", default="8,16,32")
    args = parser.parse_args()
    from transformers.video_utils import load_video

    rows = []
    for size in args.sizes.split(","):
        for seconds in (int(s) for s in args.durations.split(",")):
            path = bench_video(size, seconds)
            sample_video(path, VideoSampling(num_frames=2))  # warm imports and file cache
            # Decoding everything costs the same whatever the frame count: measured once per video.
            everything = timed({"all": partial(decode_all, path, 8)}, 1)["all"]
            for n in (int(f) for f in args.frames.split(",")):
                methods = {
                    "ours": partial(sample_video, path, VideoSampling(num_frames=n)),
                    "ours_pyav": partial(sample_video, path, VideoSampling(num_frames=n, backend="pyav")),
                    "hf_codec": partial(load_video, str(path), num_frames=n, backend="torchcodec"),
                }
                if seconds <= 30:
                    methods["hf_pyav"] = partial(load_video, str(path), num_frames=n, backend="pyav")
                result = timed(methods, args.repeats)
                rows.append(
                    (
                        size,
                        seconds,
                        n,
                        result["ours"],
                        result["ours_pyav"],
                        everything,
                        result["hf_codec"],
                        result.get("hf_pyav"),
                    )
                )
                print(f"  {size} {seconds}s n={n}: {result} decode-all {everything:.3f}s", flush=True)

    print()
    print(
        "| video | frames | safevid (torchcodec) | safevid (pyav) | decode-all | transformers (torchcodec) "
        "| transformers (pyav) | decode-all / safevid | transformers tc / safevid |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, seconds, n, ours, ours_pyav, everything, hf_codec, hf_pyav in rows:
        hf_pyav_cell = f"{hf_pyav:.3f} s" if hf_pyav is not None else "n/a"
        print(
            f"| {size} {seconds} s | {n} | {ours:.3f} s | {ours_pyav:.3f} s | {everything:.3f} s | {hf_codec:.3f} s "
            f"| {hf_pyav_cell} | {everything / ours:.1f}x | {hf_codec / ours:.2f}x |"
        )


if __name__ == "__main__":
    main()
