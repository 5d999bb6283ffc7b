"""The request and response objects passed between the HTTP handler and the API endpoints."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safevid.testing.hub.errors import HubError


@dataclass
class Request:
    """A routed request: what an endpoint reads."""

    method: str
    path: str  # raw (still percent-encoded) path, without the query
    query: dict[str, list[str]]
    headers: Any
    chunks: Iterator[bytes]  # the request body, read on demand
    authenticated: bool
    match: re.Match[str]
    _body: bytes | None = None

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self.chunks)
        return self._body

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("1", "true", "yes")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"Request body is not valid JSON: {err}") from err


@dataclass
class Response:
    """An endpoint's answer: a JSON payload, or a file (or a byte range of it) streamed as the body."""

    status: int = 200
    payload: Any = None
    headers: dict[str, str] | None = None
    file: Path | None = None  # streamed body
    file_range: tuple[int, int] | None = None  # inclusive byte range of `file`
    content_type: str = "application/json"
