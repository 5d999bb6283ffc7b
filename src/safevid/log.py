"""Logging for safevid's commands: our progress at INFO, other libraries only when they warn."""

from __future__ import annotations

import logging


def configure_logging(level: int = logging.INFO) -> None:
    """Show `safevid.*` records at `level` on stderr; leave the root logger (httpx, datasets, ...) at WARNING.

    A root `basicConfig(level=INFO)` would also print every HTTP request the Hub client makes.
    """
    logger = logging.getLogger("safevid")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
