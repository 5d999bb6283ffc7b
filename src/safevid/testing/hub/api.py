"""Routing of Hub API requests: the route table, authentication, error answers and the checks endpoints share.

The endpoints themselves live in `repos`, `tree`, `refs`, `uploads` and `downloads`: functions taking the
`HubApi` (for the hub's state and the shared checks) and the `Request`, returning a `Response`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from safevid.testing.hub import downloads, refs, repos, tree, uploads
from safevid.testing.hub.errors import HubError
from safevid.testing.hub.protocol import Request, Response

if TYPE_CHECKING:
    from safevid.testing.hub.server import LoopbackHub

logger = logging.getLogger(__name__)

Endpoint = Callable[["HubApi", Request], Response]

_TYPE_FROM_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_TYPE_FROM_PREFIX = {None: "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO = r"(?P<repo>[^/]+/[^/]+)"
_API = r"^/api/(?P<plural>models|datasets|spaces)/" + _REPO
_PREFIXED_REPO = r"^/(?:(?P<prefix>datasets|spaces)/)?" + _REPO
_REV = r"/(?P<rev>[^/]+)$"
_RESOLVE = _PREFIXED_REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"

# (method, pattern, endpoint, needs authentication)
_ROUTES: list[tuple[str, re.Pattern[str], Endpoint, bool]] = [
    (method, re.compile(pattern), endpoint, auth)
    for method, pattern, endpoint, auth in [
        ("GET", r"^/api/whoami-v2$", repos.whoami, True),
        ("GET", r"^/api/agent-harnesses$", repos.agent_harnesses, False),
        ("POST", r"^/api/repos/create$", repos.create_repo, True),
        ("DELETE", r"^/api/repos/delete$", repos.delete_repo, True),
        ("POST", r"^/api/validate-yaml$", repos.validate_yaml, False),
        ("GET", _API + r"$", repos.repo_info, False),
        ("GET", _API + r"/revision" + _REV, repos.repo_info, False),
        ("PUT", _API + r"/settings$", repos.settings, True),
        ("GET", _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$", tree.list_tree, False),
        ("POST", _API + r"/paths-info" + _REV, tree.paths_info, False),
        ("GET", _API + r"/refs$", refs.list_refs, False),
        ("GET", _API + r"/commits" + _REV, refs.list_commits, False),
        ("POST", _API + r"/branch" + _REV, refs.create_branch, True),
        ("DELETE", _API + r"/branch" + _REV, refs.delete_branch, True),
        ("POST", _API + r"/tag" + _REV, refs.create_tag, True),
        ("POST", _API + r"/preupload" + _REV, uploads.preupload, True),
        ("POST", _API + r"/commit" + _REV, uploads.commit, True),
        ("POST", _PREFIXED_REPO + r"\.git/info/lfs/objects/batch$", uploads.lfs_batch, True),
        ("PUT", r"^/lfs-upload/(?P<ticket>[0-9a-f]+)$", uploads.lfs_upload, False),
        ("POST", r"^/lfs-verify$", uploads.lfs_verify, True),
        ("GET", _RESOLVE, downloads.resolve, False),
        ("HEAD", _RESOLVE, downloads.resolve, False),
    ]
]


class HubApi:
    """Answers Hub API requests for a `LoopbackHub`, from its store, user, endpoint and page size.

    Args:
        hub (`LoopbackHub`): The server whose state the endpoints read; it records unhandled routes.
    """

    def __init__(self, hub: LoopbackHub):
        self.hub = hub
        self.lfs_tickets: dict[str, tuple[str, int]] = {}
        """LFS upload links handed out by the batch API and not used yet: ticket -> (sha256, size)."""

    def handle(self, method: str, path: str, query: str, headers: Any, chunks: Iterator[bytes]) -> Response:
        """Route a request and answer it; errors become JSON error responses, never exceptions.

        Args:
            method (`str`): HTTP method.
            path (`str`), query (`str`): The request target, split; `path` still percent-encoded.
            headers: The request headers (anything with `get`, such as `email.message.Message`).
            chunks (`Iterator[bytes]`): The body, read only if the endpoint needs it.
        """
        try:
            routed = _route(method, path)
            if routed is None:
                self.hub.unhandled_requests.append(f"{method} {path}")
                logger.warning("LoopbackHub: unhandled route %s %s (answered 404)", method, path)
                raise HubError(404, f"The loopback Hub does not implement {method} {path}")
            match, endpoint, needs_auth = routed
            authenticated = _authenticated(headers.get("Authorization"))
            if authenticated is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            if needs_auth and not authenticated:
                raise HubError(401, f"Authentication required for {method} {path}: pass a token")
            request = Request(method, path, parse_qs(query), headers, chunks, authenticated, match)
            return endpoint(self, request)
        except HubError as err:
            error_headers = {**err.headers, "X-Error-Message": err.message}
            if err.code:
                error_headers["X-Error-Code"] = err.code
            return Response(
                status=err.status, payload={"error": err.message, **err.extra}, headers=error_headers
            )
        except Exception as err:  # a bug in the emulation: answer 500 and say so loudly
            logger.exception("LoopbackHub: error while serving %s %s", method, path)
            return Response(status=500, payload={"error": f"Loopback Hub internal error: {err!r}"})

    # -- checks shared by the endpoints ------------------------------------------------------------------

    def readable_repo(self, req: Request) -> tuple[str, str, dict[str, Any]]:
        """`(repo_type, repo_id, metadata)` of the repo the request names, if it exists and may be read."""
        groups = req.match.groupdict()
        if groups.get("plural"):
            repo_type = _TYPE_FROM_PLURAL[groups["plural"]]
        else:
            repo_type = _TYPE_FROM_PREFIX[groups.get("prefix")]
        repo_id = unquote(groups["repo"])
        meta = self.hub.store.get_repo(repo_type, repo_id)
        # A private repo is indistinguishable from a missing one without credentials, as on the Hub.
        if meta is None or (meta["private"] and not req.authenticated):
            raise HubError.repo_not_found(repo_type, repo_id, 401 if meta is not None else 404)
        return repo_type, repo_id, meta

    def revision(self, req: Request) -> tuple[str, str, dict[str, Any], str]:
        """`readable_repo` plus the commit sha of the request's revision (`main` if it names none)."""
        repo_type, repo_id, meta = self.readable_repo(req)
        rev = unquote(req.match.group("rev") or "main") if "rev" in req.match.groupdict() else "main"
        return repo_type, repo_id, meta, self.hub.store.resolve_revision(repo_type, repo_id, rev)

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.hub.endpoint}/{_URL_PREFIX[repo_type]}{repo_id}"


def _route(method: str, path: str) -> tuple[re.Match[str], Endpoint, bool] | None:
    for route_method, pattern, endpoint, auth in _ROUTES:
        if route_method == method and (match := pattern.match(path)):
            return match, endpoint, auth
    return None


def _authenticated(header: str | None) -> bool | None:
    """`True` with a bearer token, `False` without any, `None` if the `Authorization` header is malformed."""
    if header is None:
        return False
    scheme, _, token = header.partition(" ")
    return True if scheme.lower() == "bearer" and token.strip() else None
