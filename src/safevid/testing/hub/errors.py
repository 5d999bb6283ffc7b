"""The error the loopback Hub answers a client with."""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """An error answered to the client, with the `X-Error-Code` header that `huggingface_hub` maps to its
    exception classes (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}  # more fields of the JSON error body

    @classmethod
    def repo_not_found(cls, repo_type: str, repo_id: str, status: int = 404) -> HubError:
        return cls(status, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
