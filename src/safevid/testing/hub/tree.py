"""Tree endpoints: list a revision's files and folders (paginated) and describe given paths."""

from __future__ import annotations

import hashlib
import itertools
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote

from safevid.testing.hub.errors import HubError
from safevid.testing.hub.protocol import Request, Response
from safevid.testing.hub.store import FileEntry, HubStore

if TYPE_CHECKING:
    from safevid.testing.hub.api import HubApi


def list_tree(api: HubApi, req: Request) -> Response:
    repo_type, repo_id, _, sha = api.revision(req)
    folder = unquote(req.match.group("path") or "").strip("/")
    expand = req.flag("expand")
    files = api.hub.store.manifest(repo_type, repo_id, sha)
    entries = tree_entries(api.hub.store, repo_type, repo_id, sha, files, expand)
    if folder and entries.get(folder, {}).get("type") != "directory":
        raise HubError(404, f"{folder} does not exist on {sha}", "EntryNotFound", {"X-Repo-Commit": sha})
    prefix = folder + "/" if folder else ""
    listed = [
        entry
        for path, entry in entries.items()
        if path.startswith(prefix) and (req.flag("recursive") or "/" not in path[len(prefix) :])
    ]
    # Folders first then files, each by path, like the Hub.
    listed.sort(key=lambda e: (e["type"] != "directory", e["path"]))
    page_size = max(1, min(api.hub.tree_page_size, 50) if expand else api.hub.tree_page_size)
    start = int(req.param("cursor") or 0)
    page = listed[start : start + page_size]
    headers = {"X-Repo-Commit": sha}
    if start + page_size < len(listed):
        query = "&".join(
            f"{k}={quote(v[0])}" for k, v in sorted(req.query.items()) if k not in ("cursor", "limit")
        )
        next_url = f"{api.hub.endpoint}{req.path}?{query}{'&' if query else ''}cursor={start + page_size}"
        headers["Link"] = f'<{next_url}>; rel="next"'
    return Response(payload=page, headers=headers)


def paths_info(api: HubApi, req: Request) -> Response:
    repo_type, repo_id, _, sha = api.revision(req)
    if "json" in req.headers.get("Content-Type", ""):
        body = req.json()
        paths, expand = body.get("paths", []), bool(body.get("expand"))
    else:
        form = parse_qs(req.body.decode(), keep_blank_values=True)
        paths, expand = form.get("paths", []), (form.get("expand", ["false"])[0].lower() == "true")
    files = api.hub.store.manifest(repo_type, repo_id, sha)
    entries = tree_entries(api.hub.store, repo_type, repo_id, sha, files, expand)
    found = [entries[p.strip("/")] for p in paths if p.strip("/") in entries]
    return Response(payload=found, headers={"X-Repo-Commit": sha})


def tree_entries(
    store: HubStore, repo_type: str, repo_id: str, sha: str, files: dict[str, FileEntry], expand: bool
) -> dict[str, dict[str, Any]]:
    """Every file and folder of a manifest, as the tree API describes them, by path.

    Args:
        store (`HubStore`): Where the repo lives (read for the history when `expand`).
        repo_type (`str`), repo_id (`str`), sha (`str`): The revision that `files` is the manifest of.
        files (`dict[str, FileEntry]`): The manifest.
        expand (`bool`): Add each entry's last commit, and a security status to files, as `expand=True` does.
    """
    entries: dict[str, dict[str, Any]] = {}
    children: dict[str, list[str]] = {}
    for path, entry in files.items():
        item: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
        if entry.lfs:
            item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        entries[path] = item
        parts = path.split("/")
        for depth in range(1, len(parts)):
            children.setdefault("/".join(parts[:depth]), []).append(path)
    for folder, paths in children.items():
        tree_id = hashlib.sha1("\n".join(f"{p} {files[p].oid}" for p in sorted(paths)).encode()).hexdigest()
        entries[folder] = {"type": "directory", "oid": tree_id, "size": 0, "path": folder}
    if expand:
        for path, commit in _last_commits(store, repo_type, repo_id, sha, entries).items():
            entries[path]["lastCommit"] = {
                "id": commit["id"],
                "title": commit["title"],
                "date": commit["date"],
            }
            if entries[path]["type"] == "file":
                entries[path]["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": None,
                    "pickleImportScan": None,
                }
    return entries


def _last_commits(
    store: HubStore, repo_type: str, repo_id: str, sha: str, entries: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """For each path, the newest commit that changed it (or anything under it)."""
    found: dict[str, dict[str, Any]] = {}
    history = store.history(repo_type, repo_id, sha)
    for commit, parent in itertools.zip_longest(history, history[1:]):
        before = parent["files"] if parent else {}
        changed = {p for p in set(commit["files"]) | set(before) if commit["files"].get(p) != before.get(p)}
        for path in entries:
            if path not in found and any(c == path or c.startswith(path + "/") for c in changed):
                found[path] = commit
        if len(found) == len(entries):
            break
    return found
