"""File resolution: `GET`/`HEAD` of `/<repo>/resolve/<rev>/<path>`, whole or by byte range."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from safevid.testing.hub.errors import HubError
from safevid.testing.hub.protocol import Request, Response

if TYPE_CHECKING:
    from safevid.testing.hub.api import HubApi


def resolve(api: HubApi, req: Request) -> Response:
    repo_type, repo_id, _, sha = api.revision(req)
    path = unquote(req.match.group("path"))
    entry = api.hub.store.manifest(repo_type, repo_id, sha).get(path)
    headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
    if entry is None:
        raise HubError(404, f"Entry not found: {path} at {sha}", "EntryNotFound", headers)
    headers["ETag"] = f'"{entry.sha256 if entry.lfs else entry.oid}"'
    if entry.lfs:
        # On the Hub these come with the redirect to the CDN; huggingface_hub prefers them over ETag.
        headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
    headers["Content-Disposition"] = f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}"
    blob = api.hub.store.blob_path(entry.sha256)
    byte_range = parse_range(req.headers.get("Range"), entry.size)
    if byte_range == "unsatisfiable":
        headers["Content-Range"] = f"bytes */{entry.size}"
        raise HubError(416, f"Range {req.headers.get('Range')} not satisfiable for {entry.size} bytes", None, headers)  # fmt: skip
    if byte_range is None:
        return Response(headers=headers, file=blob, content_type="application/octet-stream")
    start, end = byte_range
    headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
    return Response(
        status=206, headers=headers, file=blob, file_range=byte_range, content_type="application/octet-stream"
    )


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """`(start, end)` inclusive for a single `bytes=` range, `None` to serve everything, or "unsatisfiable"."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or not any(match.groups()):
        return None  # several ranges or another unit: serving the whole file is allowed by RFC 9110
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return "unsatisfiable"
    return start, end
