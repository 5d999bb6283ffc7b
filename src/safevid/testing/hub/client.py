"""The client side: the environment that points Hugging Face libraries at a loopback Hub, and `online`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

DUMMY_TOKEN = "hf_loopback_dummy_token"
"""The token handed to clients: the loopback Hub accepts any bearer token."""

# Module attributes that hold the endpoint (read once at import) and the offline switches (flipped by
# `online`). `HF_HUB_DISABLE_XET` is forced on: uploads would otherwise go to a Xet endpoint.
_ENDPOINT_CONSTANTS = (
    ("huggingface_hub.constants", "ENDPOINT"),
    ("datasets.config", "HF_ENDPOINT"),
    ("evaluate.config", "HF_ENDPOINT"),
)
_OFFLINE_SWITCHES = (
    ("huggingface_hub.constants", "HF_HUB_OFFLINE", False),
    ("huggingface_hub.constants", "HF_HUB_DISABLE_XET", True),
    ("datasets.config", "HF_HUB_OFFLINE", False),
    ("datasets.config", "HF_DATASETS_OFFLINE", False),
    ("evaluate.config", "HF_EVALUATE_OFFLINE", False),
)


def client_env(endpoint: str, token: str = DUMMY_TOKEN) -> dict[str, str]:
    """Environment variables that point the Hugging Face client libraries at a loopback Hub.

    Args:
        endpoint (`str`): The Hub's base URL, e.g. `LoopbackHub.endpoint`.
        token (`str`, *optional*): The token to send; the loopback Hub accepts any.

    Returns:
        `dict[str, str]`: `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_DISABLE_XET=1` (mandatory: with Xet enabled,
        uploads bypass the LFS API this server implements) and `HF_HUB_OFFLINE=0`. Set them before the
        libraries are imported: they read them once, at import.
    """
    return {
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": token,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
    }


@contextlib.contextmanager
def online(endpoint: str, token: str = DUMMY_TOKEN) -> Iterator[None]:
    """Let this process's Hub clients reach `endpoint` for the duration of the block (see `LoopbackHub.online`).

    Raises:
        `RuntimeError`: if a library was imported with another endpoint.
    """
    env = client_env(endpoint, token)
    for module_name, attr in _ENDPOINT_CONSTANTS:
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, attr, None) != endpoint:
            raise RuntimeError(
                f"{module_name}.{attr} is {getattr(module, attr)!r}, not {endpoint!r}: it was imported "
                "before HF_ENDPOINT pointed at this loopback Hub. Set the environment from "
                "`client_env()` before importing Hub libraries, or run the client code with `run_python`."
            )
    saved_env = {name: os.environ.get(name) for name in env}
    saved_attrs: dict[tuple[str, str], Any] = {}
    for module_name, attr, _ in _OFFLINE_SWITCHES:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attr):
            saved_attrs[module_name, attr] = getattr(module, attr)
    os.environ.update(env)
    _set_switches(online=True)
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _set_switches(online=False, saved=saved_attrs)


def _set_switches(*, online: bool, saved: dict[tuple[str, str], Any] | None = None) -> None:
    offline_env = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    for module_name, attr, online_value in _OFFLINE_SWITCHES:
        module = sys.modules.get(module_name)
        if module is None or not hasattr(module, attr):
            continue
        if online:
            setattr(module, attr, online_value)
        elif saved is not None and (module_name, attr) in saved:
            setattr(module, attr, saved[module_name, attr])
        elif attr.endswith("OFFLINE"):
            # Imported inside the block: it read the online environment, so bring it back to the
            # environment's offline setting rather than leaving the process online.
            setattr(module, attr, offline_env)
