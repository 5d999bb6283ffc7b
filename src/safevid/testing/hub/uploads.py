"""Upload endpoints: preupload (regular or LFS), NDJSON commits, and the Git LFS basic batch upload."""

from __future__ import annotations

import base64
import json
import re
import secrets
from typing import TYPE_CHECKING
from urllib.parse import unquote

from safevid.testing.hub.errors import HubError
from safevid.testing.hub.gitattributes import lfs_patterns, needs_lfs
from safevid.testing.hub.protocol import Request, Response
from safevid.testing.hub.store import check_repo_path

if TYPE_CHECKING:
    from safevid.testing.hub.api import HubApi


def preupload(api: HubApi, req: Request) -> Response:
    _reject_pull_requests(req)
    repo_type, repo_id, _, sha = api.revision(req)
    body = req.json()
    files = api.hub.store.manifest(repo_type, repo_id, sha)
    patterns = lfs_patterns(
        api.hub.store.blob_path(files[".gitattributes"].sha256).read_text()
        if ".gitattributes" in files
        else ""
    )
    answer = []
    for item in body.get("files", []):
        path = check_repo_path(str(item.get("path", "")))
        sample = base64.b64decode(item.get("sample") or "")
        is_lfs = needs_lfs(path, int(item.get("size") or 0), sample, patterns)
        existing = files.get(path)
        oid = None
        if existing is not None:
            # The client compares this with its local oid to skip unchanged files: sha256 for LFS, git
            # blob sha1 otherwise.
            oid = existing.sha256 if existing.lfs else existing.oid
        answer.append(
            {"path": path, "uploadMode": "lfs" if is_lfs else "regular", "shouldIgnore": False, "oid": oid}
        )
    return Response(payload={"files": answer, "commitOid": sha})


def commit(api: HubApi, req: Request) -> Response:
    _reject_pull_requests(req)
    repo_type, repo_id, _ = api.readable_repo(req)
    branch = unquote(req.match.group("rev"))
    lines = [line for line in req.body.splitlines() if line.strip()]
    if not lines:
        raise HubError(400, "Empty commit payload")
    try:
        items = [json.loads(line) for line in lines]
    except json.JSONDecodeError as err:
        raise HubError(400, f"Commit payload is not NDJSON: {err}") from err
    header = items[0].get("value", {}) if items[0].get("key") == "header" else None
    if header is None:
        raise HubError(400, "The first line of a commit payload must be its header")
    sha = api.hub.store.commit(
        repo_type,
        repo_id,
        branch,
        [(item.get("key"), item.get("value") or {}) for item in items[1:]],
        summary=str(header.get("summary") or "Upload files"),
        description=str(header.get("description") or ""),
        parent_commit=header.get("parentCommit"),
    )
    return Response(
        payload={
            "success": True,
            "commitOid": sha,
            "commitUrl": f"{api.repo_url(repo_type, repo_id)}/commit/{sha}",
            "hookOutput": "",
            "pullRequestUrl": None,
        }
    )


def _reject_pull_requests(req: Request) -> None:
    if req.flag("create_pr"):
        raise HubError(400, "The loopback Hub does not implement pull requests (create_pr=True)")


def lfs_batch(api: HubApi, req: Request) -> Response:
    api.readable_repo(req)
    body = req.json()
    if body.get("operation") != "upload":
        raise HubError(400, f"The loopback Hub's LFS batch API only uploads, got {body.get('operation')!r}")
    if "basic" not in body.get("transfers", ["basic"]):
        raise HubError(400, "The loopback Hub's LFS batch API only offers the 'basic' transfer")
    endpoint = api.hub.endpoint
    objects = []
    for obj in body.get("objects", []):
        oid, size = str(obj.get("oid", "")), obj.get("size")
        if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
            objects.append({"oid": oid, "size": size if isinstance(size, int) else 0, "error": {"code": 422, "message": "Invalid object"}})  # fmt: skip
            continue
        if api.hub.store.has_blob(oid, size):
            objects.append({"oid": oid, "size": size})  # already stored: no actions, the client skips it
            continue
        # Like a presigned storage URL, the upload link needs no token but is good for one object only.
        ticket = secrets.token_hex(16)
        api.lfs_tickets[ticket] = (oid, size)
        objects.append(
            {
                "oid": oid,
                "size": size,
                "authenticated": True,
                "actions": {
                    "upload": {"href": f"{endpoint}/lfs-upload/{ticket}", "expires_in": 3600},
                    "verify": {"href": f"{endpoint}/lfs-verify", "header": {}},
                },
            }
        )
    return Response(
        payload={"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
        content_type="application/vnd.git-lfs+json",
    )


def lfs_upload(api: HubApi, req: Request) -> Response:
    claimed = api.lfs_tickets.pop(req.match.group("ticket"), None)
    if claimed is None:
        raise HubError(403, "Unknown or already used LFS upload link")
    oid, size = claimed
    api.hub.store.put_blob_stream(req.chunks, oid, size)  # streamed: LFS files can be large
    return Response(payload={}, headers={"ETag": f'"{oid}"'})


def lfs_verify(api: HubApi, req: Request) -> Response:
    body = req.json()
    if not api.hub.store.has_blob(str(body.get("oid", "")), body.get("size")):
        raise HubError(404, f"LFS object {body.get('oid')} ({body.get('size')} bytes) is not stored")
    return Response(payload={"success": True})
