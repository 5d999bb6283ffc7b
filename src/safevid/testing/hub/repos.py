"""Account and repo endpoints: whoami, repo creation, deletion, settings and info, card YAML validation."""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from typing import TYPE_CHECKING, Any

import yaml

from safevid.testing.hub.errors import HubError
from safevid.testing.hub.protocol import Request, Response

if TYPE_CHECKING:
    from safevid.testing.hub.api import HubApi

REPO_TYPES = ("model", "dataset", "space")
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")


def whoami(api: HubApi, req: Request) -> Response:
    return Response(
        payload={
            "type": "user",
            "id": "loopback-user-id",
            "name": api.hub.user,
            "fullname": "Loopback Hub user",
            "email": None,
            "emailVerified": False,
            "canPay": False,
            "isPro": False,
            "periodEnd": None,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write"}},
        }
    )


def agent_harnesses(api: HubApi, req: Request) -> Response:
    # huggingface_hub fetches this registry for its user agent; an empty one detects no agent.
    return Response(payload={"standardEnvVars": [], "harnesses": {}})


def create_repo(api: HubApi, req: Request) -> Response:
    body = req.json()
    repo_type = body.get("type") or "model"
    if repo_type not in REPO_TYPES:
        raise HubError(400, f"Invalid repo type {repo_type!r}; expected one of {REPO_TYPES}")
    name = body.get("name")
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name.endswith(".git"):
        raise HubError(400, f"Invalid repo name {name!r}")
    repo_id = f"{body.get('organization') or api.hub.user}/{name}"
    sdk = body.get("sdk")
    if repo_type == "space" and sdk not in SPACE_SDKS:
        raise HubError(400, f"A space needs `sdk` in {SPACE_SDKS}, got {sdk!r}")
    private = body.get("private") is True or body.get("visibility") == "private"
    created = api.hub.store.create_repo(repo_type, repo_id, private=private, sdk=sdk)
    url = api.repo_url(repo_type, repo_id)
    if not created:
        # huggingface_hub's `create_repo(exist_ok=True)` reads the url from this error body, as the Hub sends it.
        raise HubError(409, f"You already created this {repo_type} repo: {repo_id}", extra={"url": url})
    return Response(payload={"url": url, "name": repo_id, "id": uuid.uuid4().hex[:24]})


def delete_repo(api: HubApi, req: Request) -> Response:
    body = req.json()
    repo_type = body.get("type") or "model"
    repo_id = f"{body.get('organization') or api.hub.user}/{body.get('name')}"
    if not api.hub.store.delete_repo(repo_type, repo_id):
        raise HubError.repo_not_found(repo_type, repo_id)
    return Response(payload={})


def settings(api: HubApi, req: Request) -> Response:
    repo_type, repo_id, _ = api.readable_repo(req)
    body = req.json()
    if "private" in body:
        api.hub.store.set_private(repo_type, repo_id, bool(body["private"]))
    return Response(payload={})


def validate_yaml(api: HubApi, req: Request) -> Response:
    content = str(req.json().get("content", ""))
    try:
        front_matter(content)
    except ValueError as err:
        return Response(status=400, payload={"errors": [{"message": str(err)}], "warnings": []})
    return Response(payload={"errors": [], "warnings": []})


def repo_info(api: HubApi, req: Request) -> Response:
    repo_type, repo_id, meta, sha = api.revision(req)
    store = api.hub.store
    commit = store.read_commit(repo_type, repo_id, sha)
    files = store.manifest(repo_type, repo_id, sha)
    with_blobs = req.flag("blobs")
    siblings = []
    for path, entry in files.items():
        sibling: dict[str, Any] = {"rfilename": path}
        if with_blobs:
            sibling.update(size=entry.size, blobId=entry.oid)
            if entry.lfs:
                sibling["lfs"] = {
                    "size": entry.size,
                    "sha256": entry.sha256,
                    "pointerSize": entry.pointer_size,
                }
        siblings.append(sibling)
    card_data = None
    if "README.md" in files:
        readme = store.blob_path(files["README.md"].sha256).read_text(errors="replace")
        with contextlib.suppress(ValueError):
            card_data = front_matter(readme)
    payload: dict[str, Any] = {
        "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
        "id": repo_id,
        "author": repo_id.split("/")[0],
        "sha": sha,
        "createdAt": meta["createdAt"],
        "lastModified": commit["date"],
        "private": meta["private"],
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": sum(entry.size for entry in files.values()),
    }
    if card_data is not None:
        payload["cardData"] = card_data
    if repo_type == "model":
        payload["modelId"] = repo_id
    if repo_type == "space":
        payload.update(sdk=meta["sdk"], subdomain=repo_id.replace("/", "-").lower(), host=api.hub.endpoint)
    return Response(payload=payload)


def front_matter(content: str) -> dict[str, Any] | None:
    """The YAML header of a repo card, `None` without one; `ValueError` if it is not a YAML mapping."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(?:\n|$)", content, flags=re.DOTALL)
    if match is None:
        return None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        raise ValueError(f"Invalid YAML in the card's metadata: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"The card's metadata must be a YAML mapping, got {type(data).__name__}")
    return data
