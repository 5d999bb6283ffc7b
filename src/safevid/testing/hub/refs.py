"""Refs and history endpoints: list branches and tags, list commits, create and delete branches, create tags."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from safevid.testing.hub.errors import HubError
from safevid.testing.hub.protocol import Request, Response

if TYPE_CHECKING:
    from safevid.testing.hub.api import HubApi


def list_refs(api: HubApi, req: Request) -> Response:
    _, _, meta = api.readable_repo(req)

    def listed(kind: str, names: dict[str, str]) -> list[dict[str, str]]:
        return [
            {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha} for name, sha in names.items()
        ]

    payload = {
        "branches": listed("heads", meta["refs"]),
        "converts": [],
        "tags": listed("tags", meta.get("tags", {})),
        "pullRequests": [],
    }
    return Response(payload=payload)


def list_commits(api: HubApi, req: Request) -> Response:
    repo_type, repo_id, _, sha = api.revision(req)
    payload = [
        {
            "id": commit["id"],
            "title": commit["title"],
            "message": commit["message"],
            "date": commit["date"],
            "authors": [{"user": api.hub.user}],
        }
        for commit in api.hub.store.history(repo_type, repo_id, sha)
    ]
    return Response(payload=payload)


def create_branch(api: HubApi, req: Request) -> Response:
    repo_type, repo_id, _ = api.readable_repo(req)
    body = req.json() if req.body else {}
    api.hub.store.create_branch(
        repo_type, repo_id, unquote(req.match.group("rev")), body.get("startingPoint")
    )
    return Response(payload={})


def delete_branch(api: HubApi, req: Request) -> Response:
    repo_type, repo_id, _ = api.readable_repo(req)
    api.hub.store.delete_branch(repo_type, repo_id, unquote(req.match.group("rev")))
    return Response(payload={})


def create_tag(api: HubApi, req: Request) -> Response:
    repo_type, repo_id, _ = api.readable_repo(req)
    tag = req.json().get("tag")
    if not tag:
        raise HubError(400, "A tag needs a name (`tag` in the body)")
    api.hub.store.create_tag(repo_type, repo_id, str(tag), unquote(req.match.group("rev")))
    return Response(payload={})
