"""Build tiny random-weight checkpoints of real video LMM architectures, offline, and print their paths.

Each checkpoint comes with its family's real processor, a locally trained tokenizer and the family's
chat template, and loads with `AutoModelForImageTextToText` / `AutoProcessor` (the "text" family with
`AutoModelForCausalLM` / `AutoTokenizer`). Without --output-dir they are cached under
$SAFEVID_HOME/tiny-models and reused. Each checkpoint is printed as one tab-separated line (family,
architecture, parameter count, folder), or with --path-only as its folder alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from safevid.testing.tiny_models import FAMILIES

    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--family", action="append", choices=FAMILIES, help="A family to build; repeat for several."
    )
    which.add_argument("--all", action="store_true", help=f"Build every family: {', '.join(FAMILIES)}.")
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="Write the checkpoints to DIR/<family> instead of the shared cache.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights (default: 0).")
    parser.add_argument(
        "--overwrite", action="store_true", help="Rebuild even if a matching checkpoint is already there."
    )
    parser.add_argument(
        "--path-only",
        action="store_true",
        help="Print only each checkpoint's folder, one a line, for scripts: "
        "`--model_name_or_path $(python -m safevid.testing tiny-models --family qwen2_5_vl --path-only)`.",
    )


def run(args: argparse.Namespace) -> int:
    from safevid.testing.tiny_models import FAMILIES, build_tiny_model, load_manifest

    families = list(FAMILIES) if args.all else list(dict.fromkeys(args.family))
    for family in families:
        output_dir = args.output_dir / family if args.output_dir is not None else None
        path = build_tiny_model(family, output_dir, seed=args.seed, overwrite=args.overwrite)
        if args.path_only:
            print(path)
        else:
            manifest = load_manifest(path)
            print(f"{family}\t{manifest['architecture']}\t{manifest['num_parameters']:,} parameters\t{path}")
        sys.stdout.flush()
    return 0
