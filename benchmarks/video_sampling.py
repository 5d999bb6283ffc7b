"""Benchmark: sampling positions and decoders side by side: safevid (exact and keyframe positions), decode-all,
transformers' `load_video`, and safevid's decoders at transformers' own positions.

Samples 8/16/32 frames from H.264 videos (640x360 and 1280x720, 30 s and 120 s, 30 fps, a keyframe every 2 s as
streaming encoders use) and prints two Markdown tables of median times and ratios. Videos are generated once
into ``$SAFEVID_HOME/bench-videos``.

    python benchmarks/video_sampling.py [--repeats 3] [--sizes 640x360,1280x720] [--durations 30,120]
                                        [--frames 8,16,32] [--skip-decode-all]
    python benchmarks/video_sampling.py --quick   # smoke run: one 20 s 320x180 video, 8 frames, once

Compared, on the same files and frame counts, all in this process. Position policy (first table):
- ``exact``: `sample_video` with the default `VideoSampling` (segment centres, torchcodec, exact seeks), and the
  same with the PyAV backend.
- ``keyframe``: the same with ``positions="keyframe"`` (each sample on the keyframe nearest its centre).
- ``decode-all``: torchcodec decoding every frame, then picking the frames at the centres' indices.
- ``transformers``: ``transformers.video_utils.load_video(path, num_frames=n, backend=...)`` with its torchcodec
  backend (and its default PyAV backend on the 30 s videos only, as it decodes up to the last requested frame and
  is slow on long videos).

Equal positions (second table): safevid's decoders (opened as `sample_video` opens them, exact seek mode) asked
for exactly the frame indices transformers' loader picks, against that loader, so decoder cost is measured apart
from the position policy.
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
from safevid.video import VideoSampling, probe_video, sample_video
from safevid.video.decoders import open_decoder
from safevid.video.sources import resolve_source


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


def transformers_indices(path: Path, num_frames: int) -> list[int]:
    """The frame indices `load_video(path, num_frames=...)` decodes, from transformers' own sampling function."""
    from transformers.video_utils import VideoMetadata, default_sample_indices_fn

    probe = probe_video(path)  # exact frame count, as transformers' torchcodec reader reads it
    metadata = VideoMetadata(total_num_frames=probe.num_frames, fps=probe.fps)
    return [int(i) for i in default_sample_indices_fn(metadata, num_frames=num_frames)]


def at_indices(path: Path, backend: str, indices: list[int]) -> object:
    """safevid's decoder for `backend`, opened as `sample_video` opens it, asked for exactly these frames."""
    decoder = open_decoder(resolve_source(path), backend, "exact")
    try:
        return decoder.frames_at_indices(indices)[0]
    finally:
        decoder.close()


def cell(seconds: float | None) -> str:
    return f"{seconds:.3f} s" if seconds is not None else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="640x360,1280x720")
    parser.add_argument("--durations", default="30,120")
    parser.add_argument("--frames", default="8,16,32")
    parser.add_argument(
        "--skip-decode-all", action="store_true", help="Leave out decode-all (minutes on 120 s 720p)."
    )
    parser.add_argument(
        "--quick", action="store_true", help="Smoke run: 320x180, 20 s, 8 frames, one repeat."
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.durations, args.frames, args.repeats = "320x180", "20", "8", 1
    from transformers.video_utils import load_video

    policy_rows, equal_rows = [], []
    for size in args.sizes.split(","):
        for seconds in (int(s) for s in args.durations.split(",")):
            path = bench_video(size, seconds)
            sample_video(path, VideoSampling(num_frames=2))  # warm imports and file cache
            # Decoding everything costs the same whatever the frame count: measured once per video.
            everything = (
                None if args.skip_decode_all else timed({"all": partial(decode_all, path, 8)}, 1)["all"]
            )
            for n in (int(f) for f in args.frames.split(",")):
                keyframe = VideoSampling(num_frames=n, positions="keyframe")
                indices = transformers_indices(path, n)
                methods = {
                    "exact": partial(sample_video, path, VideoSampling(num_frames=n)),
                    "exact_pyav": partial(sample_video, path, VideoSampling(num_frames=n, backend="pyav")),
                    "keyframe": partial(sample_video, path, keyframe),
                    "keyframe_pyav": partial(
                        sample_video, path, VideoSampling(**{**keyframe.to_dict(), "backend": "pyav"})
                    ),
                    "hf_codec": partial(load_video, str(path), num_frames=n, backend="torchcodec"),
                    "at_hf": partial(at_indices, path, "torchcodec", indices),
                    "at_hf_pyav": partial(at_indices, path, "pyav", indices),
                }
                if seconds <= 30:
                    methods["hf_pyav"] = partial(load_video, str(path), num_frames=n, backend="pyav")
                result = timed(methods, args.repeats)
                # Samples that found no keyframe of their own are taken exactly (`fallback="exact_positions"`).
                fallback = sample_video(path, keyframe).fallback
                video = f"{size.replace('x', '×')}, {seconds} s"
                policy_rows.append((video, n, result, everything, fallback))
                equal_rows.append((video, n, result))
                shown = ", ".join(f"{name} {value:.3f}s" for name, value in result.items())
                print(f"  {size} {seconds}s n={n}: {shown}, decode-all {cell(everything)}", flush=True)

    print()
    print("Position policy (safevid exact vs keyframe, transformers' loader, decode-all):")
    print()
    print(
        "| video | frames | exact (torchcodec, default) | exact (PyAV) | keyframe (torchcodec) | keyframe (PyAV) "
        "| decode-all | transformers (torchcodec) | transformers (PyAV) | exact ÷ keyframe | transformers ÷ keyframe "
        "| decode-all ÷ exact |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for video, n, r, everything, fallback in policy_rows:
        note = " (some exact)" if fallback == "exact_positions" else ""
        all_ratio = f"{everything / r['exact']:.1f}×" if everything is not None else "n/a"
        print(
            f"| {video} | {n} | {cell(r['exact'])} | {cell(r['exact_pyav'])} | {cell(r['keyframe'])}{note} "
            f"| {cell(r['keyframe_pyav'])} | {cell(everything)} | {cell(r['hf_codec'])} | {cell(r.get('hf_pyav'))} "
            f"| {r['exact'] / r['keyframe']:.1f}× | {r['hf_codec'] / r['keyframe']:.2f}× | {all_ratio} |"
        )
    print()
    print("Equal positions (the frames transformers' loader picks, decoded by each):")
    print()
    print(
        "| video | frames | safevid decoder (torchcodec) | safevid decoder (PyAV) | transformers (torchcodec) "
        "| transformers ÷ safevid (torchcodec) | transformers ÷ safevid (PyAV) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for video, n, r in equal_rows:
        print(
            f"| {video} | {n} | {cell(r['at_hf'])} | {cell(r['at_hf_pyav'])} | {cell(r['hf_codec'])} "
            f"| {r['hf_codec'] / r['at_hf']:.2f}× | {r['hf_codec'] / r['at_hf_pyav']:.2f}× |"
        )


if __name__ == "__main__":
    main()
