"""The one configuration loader: YAML (or a mapping) → a typed dataclass, for every config safevid reads.

`load_config` reads the build, SafeVidBench and evaluation YAMLs (training recipes keep TRL's `TrlParser`);
`from_dict` builds any dataclass from a mapping; `read_yaml` is the YAML reading they and the taxonomy share.
Every one of them:

- refuses unknown keys at every level, with one "did you mean" hint (`did_you_mean`);
- refuses duplicate keys (PyYAML would silently keep the last);
- reads booleans the YAML 1.2 way: only ``true``/``false``; ``off``, ``on``, ``no``, ``yes`` stay strings, so
  ``judge_mode: off`` is the string ``"off"``, and a boolean field also accepts them as the words they are;
- checks types (bool, int, float, str, Literal choices, lists, mappings, nested dataclasses, optionals);
- names the file and the dotted key in every error (`ConfigError`, a `ValueError`).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

__all__ = ["ConfigError", "did_you_mean", "from_dict", "load_config", "read_config_file", "read_yaml"]

T = TypeVar("T")

# Words a boolean field accepts besides YAML's true/false (which the loader reads as strings).
_BOOL_WORDS = {"yes": True, "on": True, "no": False, "off": False}


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the key and what would be valid."""


class _Loader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2 booleans (only true/false) that refuses duplicate mapping keys."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str) -> Any:
    """Parse YAML text safely (no arbitrary objects), YAML 1.2 booleans, duplicate keys refused.

    Raises:
        yaml.YAMLError: not valid YAML, or a duplicate key (the message gives its line).

    ```python
    >>> read_yaml("judge_mode: off\\ncache: true\\n")
    {'judge_mode': 'off', 'cache': True}

    ```
    """
    return yaml.load(text, Loader=_Loader)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level mapping of a YAML config file (empty for an empty file).

    Raises:
        ConfigError: not valid YAML, a duplicate key, or a top level that is not a mapping; names the file.
    """
    try:
        data = read_yaml(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def did_you_mean(key: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or an empty string."""
    close = difflib.get_close_matches(str(key), sorted(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build the dataclass ``cls`` from a mapping, checking keys and types recursively.

    Args:
        cls: The dataclass; a ``source_file`` field, if any, is not a key (`load_config` sets it).
        data: The mapping (parsed YAML, or a dict a caller wrote).
        where: Dotted prefix of the keys in messages (``"pipeline."``); top level by default.

    Raises:
        ConfigError: not a mapping, an unknown key, a wrong type, or a value its ``__post_init__`` refuses.
    """
    label = where.rstrip(".") or "top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source_file"}  # type: ignore[arg-type]
    unknown = sorted((str(k) for k in data if k not in names), key=str)
    if unknown:
        listed = ", ".join(f"{key!r}{did_you_mean(key, names)}" for key in unknown)
        raise ConfigError(f"{label}: unknown key(s) {listed}; valid: {sorted(names)}")
    kwargs = {name: _convert(hints[name], value, f"{where}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{label}: {e}") from None


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any],
    cls: type[T],
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Load the dataclass ``cls`` from a YAML file or a mapping (see the module docstring).

    Args:
        source: A YAML file, or an already parsed mapping.
        cls: The config dataclass. If it has a ``source_file`` field, it is set to the file's path.
        overrides: Dotted keys set after reading (``{"output_dir": "x", "queries.per_variant": 2}``);
            `None` values are left out (a flag not given).

    Raises:
        ConfigError: unreadable YAML, duplicate or unknown keys, wrong types or values; the message starts
            with the file's path.
    """
    if isinstance(source, Mapping):
        name, data = "<dict>", dict(source)
    else:
        name, data = str(source), read_config_file(source)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        config = from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None
    if any(f.name == "source_file" for f in dataclasses.fields(cls)):  # type: ignore[arg-type]
        config.source_file = None if name == "<dict>" else name  # type: ignore[attr-defined]
    return config


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, where)
        return value  # a union of several types: the dataclass checks it
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, f"{where}.")  # type: ignore[arg-type]
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if origin is Literal:
        if value not in args:
            raise ConfigError(
                f"{where}: {value!r} is not one of {list(args)}{did_you_mean(str(value), map(str, args))}"
            )
        return value
    if hint is bool:
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value
