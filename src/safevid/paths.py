"""Where safevid keeps what it builds once and reuses (tiny models, response caches, decoded frames), and where a
config's relative paths point."""

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


def default_cache_dir() -> Path:
    """Where prepared rows and decoded frames are cached by default: ``$SAFEVID_HOME/dpo-cache``.

    Its ``frames`` folder is the `safevid.video.frame_store.FrameStore` that training and the evaluation harness
    share by default, so a video is decoded once per sampling on a machine, whoever needs it first.
    """
    return safevid_home() / "dpo-cache"


def resolve_config_path(path: str | os.PathLike[str], config_file: str | os.PathLike[str] | None) -> Path:
    """Resolve a path written in a config file to an absolute path.

    A relative path is looked up next to ``config_file`` first (so a config and its inputs can move
    together), then in the working directory; ``~`` is expanded.

    Args:
        path (`str` or `os.PathLike`):
            The path as written in the config.
        config_file (`str` or `os.PathLike`, *optional*):
            The config file it was read from; `None` for a config built in code.
    """
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and config_file:
        beside = Path(config_file).parent / candidate
        if beside.exists():
            return beside.resolve()
    return candidate.resolve()
