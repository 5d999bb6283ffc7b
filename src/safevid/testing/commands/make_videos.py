"""Write the standard set of test videos (codecs, sizes, VFR, rotation, broken files) to a folder.

Every frame carries its index as a grid of cells (see ``safevid.testing.videos``), so any sampler
can be checked for which frames it returned. HEVC is skipped when PyAV's FFmpeg lacks libx265.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="Folder to write the videos into (created if missing).")
    parser.add_argument("--no-bad", action="store_true", help="Skip the deliberately broken files.")


def run(args: argparse.Namespace) -> int:
    from safevid.testing.videos import encoder_available, make_video_set

    available, reason = encoder_available("hevc")
    if not available:
        print(f"skipping HEVC: {reason}")
    for name, path in make_video_set(args.out_dir, include_bad=not args.no_bad).items():
        print(f"{name}\t{path}")
    return 0
