"""Sample frames from a video and print their metadata as JSON.

Example: ``safevid sample clip.mp4 --num-frames 16 --max-pixels 200704``. Prints what a dataset
row stores (timestamps, indices, source and sampled fps, sizes, the sampling config), not frames.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="Path to a video file.")
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--num-frames", type=int, help="Frames to sample (default 8).")
    count.add_argument("--fps", type=float, help="Frames per second of video instead of a count.")
    parser.add_argument("--max-frames", type=int, help="Cap on the frame count in fps mode.")
    parser.add_argument("--min-frames", type=int, default=1, help="Fewer available frames is an error.")
    parser.add_argument("--max-pixels", type=int, help="Pixel budget per frame (downscale, keep aspect).")
    parser.add_argument("--backend", choices=("torchcodec", "pyav"), default="torchcodec")
    parser.add_argument("--seek-mode", choices=("exact", "approximate"), default="exact")
    parser.add_argument(
        "--positions",
        choices=("exact", "keyframe"),
        default="exact",
        help="Samples at the segment centres, or on the keyframes nearest them (faster, less even).",
    )
    parser.add_argument(
        "--timeout", type=float, dest="timeout_s", help="Kill the decode after this many seconds."
    )


def run(args: argparse.Namespace) -> int:
    from safevid.video import VideoDecodeError, VideoSampling, sample_video

    try:
        sampling = VideoSampling(
            num_frames=args.num_frames,
            fps=args.fps,
            max_frames=args.max_frames,
            min_frames=args.min_frames,
            max_pixels=args.max_pixels,
            backend=args.backend,
            seek_mode=args.seek_mode,
            positions=args.positions,
            timeout_s=args.timeout_s,
        )
        sampled = sample_video(args.video, sampling)
    except (VideoDecodeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(sampled.metadata(), indent=2))
    return 0
