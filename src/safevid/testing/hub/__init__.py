"""A loopback Hugging Face Hub: the subset of the Hub HTTP API that the real client libraries use.

`LoopbackHub` serves, on 127.0.0.1, what `huggingface_hub` 2.x (with `HF_HUB_DISABLE_XET=1`), `datasets`,
`transformers` and `evaluate` call to push and pull repositories: repo creation and info, tree listing and
paths-info, file resolution (HEAD, GET and Range), preupload, NDJSON commits (regular files, LFS pointers,
deletions, parent-commit check), the Git LFS basic batch upload, refs, commits, branches, tags and YAML
validation. It lets the project's tests and its offline demo run `Dataset.push_to_hub`, `load_dataset("org/name")`,
`from_pretrained("org/name")` or `evaluate.load("org/space")` end to end without a network.

Storage is a folder on disk (layout in `store`), so a server restarted on the same root sees the same repos.
Requests to routes it does not know are answered with a 404 JSON error, logged as a warning by the
`safevid.testing.hub.api` logger and recorded in `LoopbackHub.unhandled_requests`, so that a gap in the
emulation shows up instead of passing silently. Any `Bearer` token is accepted; tokens are never logged or
stored.

Modules, one job each (importing any of them imports only the standard library and `yaml`, so the test
suite's conftest can start the server before any Hugging Face library is imported):

- `server`: `LoopbackHub`, its lifecycle, `online()` / `run_python` for clients, and inspection of the store.
- `client`: `client_env` and the switches `online()` flips in the client libraries.
- `handler`: HTTP/1.1 on the socket: request bodies (chunked or not), responses, file streaming.
- `api`: routing, authentication and error answers; `repos`, `tree`, `refs`, `uploads` and `downloads`
  hold the endpoints, `protocol` the request and response objects they exchange.
- `store`: disk-backed repos, commits and content-addressed blobs; `gitattributes`: which files go to LFS.
- `errors`: `HubError`, the error answered to a client.
"""

from safevid.testing.hub.client import DUMMY_TOKEN, client_env
from safevid.testing.hub.errors import HubError
from safevid.testing.hub.server import ClientProcessError, LoopbackHub
from safevid.testing.hub.store import FileEntry, HubStore

__all__ = [
    "DUMMY_TOKEN",
    "ClientProcessError",
    "FileEntry",
    "HubError",
    "HubStore",
    "LoopbackHub",
    "client_env",
]
