"""Where safevid keeps what it builds once and reuses (tiny models, response caches)."""

from __future__ import annotations

import os
from pathlib import Path


def safevid_home() -> Path:
    """The root of safevid's caches.

    ``$SAFEVID_HOME`` if set, else ``$XDG_CACHE_HOME/safevid``, else ``~/.cache/safevid``.
    """
    if home := os.environ.get("SAFEVID_HOME"):
        return Path(home)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "safevid"
