"""Extension points: installed packages plug model resolvers, video sources and CLI commands into safevid.

Each is an entry-point group (``[project.entry-points."<group>"]`` in a package's ``pyproject.toml``), so
production code asks for a capability by name and never imports whoever provides it:

- ``safevid.model_resolvers``: ``<prefix>`` → ``resolve(name) -> str``; a model written ``<prefix>:<name>`` in
  a config is resolved to a path or Hub id (safevid's offline kit registers ``tiny``: ``tiny:qwen2_vl``).
- ``safevid.video_sources``: ``<kind>`` → ``write(folder, count) -> None``, a build input that writes
  ``count`` videos into ``folder`` (the offline kit registers ``test_videos``).
- ``safevid.commands``: ``<name>`` → a module with ``add_arguments(parser)`` and ``run(args)``, an extra
  ``safevid <name>`` subcommand.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

__all__ = ["COMMANDS", "MODEL_RESOLVERS", "VIDEO_SOURCES", "installed", "load_plugin", "resolve_model"]

MODEL_RESOLVERS = "safevid.model_resolvers"
VIDEO_SOURCES = "safevid.video_sources"
COMMANDS = "safevid.commands"


def installed(group: str) -> dict[str, EntryPoint]:
    """The entry points of ``group``, by name (the first installed distribution wins a name)."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=group):
        found.setdefault(entry.name, entry)
    return found


def load_plugin(group: str, name: str) -> Any:
    """The object ``name`` of entry-point ``group`` provides.

    Raises:
        LookupError: nothing installed provides ``name``; the message names the group and what is installed.
    """
    available = installed(group)
    if name not in available:
        have = ", ".join(sorted(available)) or "none"
        raise LookupError(
            f"No {name!r} in the entry-point group {group!r} (installed: {have}). Install the package that "
            f"provides it, or register it under [project.entry-points.{group!r}] in its pyproject.toml."
        )
    return available[name].load()


def resolve_model(model: str) -> str:
    """``<prefix>:<name>`` with an installed ``safevid.model_resolvers`` prefix → what the resolver returns;
    any other model (a Hub id, a folder, a served name such as ``llama3:8b``) as is."""
    prefix, sep, name = model.partition(":")
    if sep and prefix in installed(MODEL_RESOLVERS):
        return str(load_plugin(MODEL_RESOLVERS, prefix)(name))
    return model
