"""Loading a dataset split from a local folder or the Hub, seeing a folder's current files.

``datasets`` 5.2 caches a local folder whose card declares ``configs`` under the folder's name and its card only:
rewrite its Parquet files in place (a rebuild, a resumed publish) or load another folder of the same name, and
``load_dataset(folder)`` silently returns the old rows. The packaged builders (``parquet``, ``json``...) key their
cache by the data files themselves (path, size, modification time), so a folder is loaded through its builder's
resolved ``data_files`` instead; a Hub id is keyed by its revision and loads as usual.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["load_split"]


def load_split(
    path_or_id: str | os.PathLike[str], config: str | None = None, split: str | None = None
) -> Any:
    """``load_dataset(path_or_id, config, split=split)``, reading a local folder's files as they are now."""
    from datasets import load_dataset, load_dataset_builder

    local = Path(path_or_id).expanduser()
    if not local.is_dir():
        return load_dataset(os.fspath(path_or_id), config, split=split)
    builder = load_dataset_builder(str(local), config)
    return load_dataset(
        builder.name, data_files=builder.config.data_files, split=split, features=builder.info.features
    )
