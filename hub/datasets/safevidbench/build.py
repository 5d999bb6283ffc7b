"""Build SafeVidBench: ``python hub/datasets/safevidbench/build.py --config <config.yaml> [--push-to-hub <org>/safevidbench]``.

A build script, not a loading script (``datasets`` no longer runs those): it runs the SafeVid pipeline's
ingest/describe/classify/queries stages on held-out videos, selects balanced items across the taxonomy and
query styles, and writes a folder of Parquet files with a dataset card that ``load_dataset`` reads.
Its options are in README.md in this folder; the builder is `safevid.pipeline.benchmark`.
"""

import sys

from safevid.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-bench", *sys.argv[1:]]))
