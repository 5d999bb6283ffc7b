"""Build SafeVid-350K: ``python hub/datasets/safevid-350k/build.py --config <config.yaml> [...]``.

A build script, not a loading script (``datasets`` no longer runs those): it writes a folder of Parquet
shards with a dataset card that ``load_dataset`` reads, and pushes it with ``--push-to-hub <org>/safevid-350k``.
Every option of ``safevid build`` applies; see README.md in this folder for the cluster recipe.
"""

import sys

from safevid.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
