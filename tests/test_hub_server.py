"""The loopback Hub against the real client code of huggingface_hub, datasets, transformers and evaluate."""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from safevid.testing.hub import DUMMY_TOKEN, LoopbackHub, client_env


def test_dataset_push_to_hub_embeds_videos_and_loads_back(loopback_hub, tmp_path):
    from datasets import Dataset, Features, Value, Video, load_dataset

    from safevid.testing.videos import make_test_video

    videos = [make_test_video(tmp_path / f"v{i}.mp4", duration=0.6, fps=5 + i) for i in range(2)]
    features = Features({"id": Value("string"), "label": Value("int32"), "video": Video()})
    rows = {"id": ["a", "b"], "label": [0, 1], "video": [str(v) for v in videos]}
    repo_id = loopback_hub.unique_repo_id("videos")

    Dataset.from_dict(rows, features=features).push_to_hub(repo_id)
    first = loopback_hub.head(repo_id, "dataset")
    shards = [p for p, e in loopback_hub.files(repo_id, "dataset").items() if p.endswith(".parquet")]
    assert shards
    assert all(loopback_hub.files(repo_id, "dataset")[p].lfs for p in shards)

    # A second push (new split) is a new commit: `main` moves and the first split is still there.
    Dataset.from_dict({"id": ["c"], "label": [2], "video": [str(videos[1])]}, features=features).push_to_hub(
        repo_id, split="test"
    )
    assert loopback_hub.head(repo_id, "dataset") != first

    loaded = load_dataset(repo_id).cast_column("video", Video(decode=False))
    assert loaded["train"]["id"] == ["a", "b"]
    assert loaded["train"]["label"] == [0, 1]
    assert loaded["test"]["id"] == ["c"]
    # The bytes were embedded by push_to_hub and came back intact: nothing points at the local files.
    for row, video in zip(loaded["train"], videos, strict=True):
        assert row["video"]["bytes"] == video.read_bytes()
    assert loaded["test"][0]["video"]["bytes"] == videos[1].read_bytes()
    decoded = load_dataset(repo_id, split="train")[0]["video"]
    assert decoded.metadata.num_frames > 0


def test_upload_folder_lfs_and_regular_files_download_identically(loopback_hub, tmp_path):
    from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    folder = tmp_path / "upload"
    (folder / "sub").mkdir(parents=True)
    big = os.urandom(10 * 1024 * 1024 + 123)  # over the 10 MB threshold, whatever its name
    (folder / "big.dat").write_bytes(big)
    (folder / "weights.safetensors").write_bytes(os.urandom(2048))  # LFS through .gitattributes
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Tiny\n")
    (folder / "sub" / "notes.txt").write_text("regular file\n")
    repo_id = loopback_hub.unique_repo_id("folder")

    api = HfApi()
    api.create_repo(repo_id)
    api.create_repo(repo_id, exist_ok=True)  # 409 from the server, accepted by the client
    api.upload_folder(folder_path=folder, repo_id=repo_id)

    stored = loopback_hub.files(repo_id)
    assert stored["big.dat"].lfs
    assert stored["weights.safetensors"].lfs
    assert not stored["README.md"].lfs
    assert not stored["sub/notes.txt"].lfs
    assert any(line.startswith("PUT /lfs-upload/") for line in loopback_hub.request_log)
    assert api.model_info(repo_id).card_data.license == "apache-2.0"

    for name in ("big.dat", "weights.safetensors", "sub/notes.txt"):
        assert Path(hf_hub_download(repo_id, name)).read_bytes() == (folder / name).read_bytes()
    snapshot = Path(snapshot_download(repo_id))
    local = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    remote = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())
    assert remote == sorted([*local, ".gitattributes"])
    assert all((snapshot / name).read_bytes() == (folder / name).read_bytes() for name in local)

    # Range requests: HfFileSystem reads a slice of the LFS file without fetching all of it.
    with HfFileSystem().open(f"{repo_id}/big.dat", "rb", block_size=4096) as remote_file:
        remote_file.seek(5_000_000)
        assert remote_file.read(1000) == big[5_000_000:5_001_000]
    assert any("/resolve/" in line and line.endswith(" 206") for line in loopback_hub.request_log)

    # Re-uploading unchanged files is skipped by the client (preupload reports remote oids): no commit.
    head = loopback_hub.head(repo_id)
    api.upload_folder(folder_path=folder, repo_id=repo_id)
    assert loopback_hub.head(repo_id) == head

    # A deletion is a new commit; the file is gone at the new revision, still there at the old one.
    api.delete_file("sub/notes.txt", repo_id=repo_id)
    assert loopback_hub.head(repo_id) != head
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "sub/notes.txt", force_download=True)
    assert Path(hf_hub_download(repo_id, "sub/notes.txt", revision=head)).read_text() == "regular file\n"

    # A commit based on a stale parent is refused.
    with pytest.raises(Exception, match="412"):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id, parent_commit=head)


def test_tree_pagination_paths_info_branches_and_tags(loopback_hub):
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi()
    repo_id = loopback_hub.unique_repo_id("tree")
    api.create_repo(repo_id, repo_type="dataset")
    paths = [f"data/part-{i}.txt" for i in range(5)]
    api.create_commit(
        repo_id,
        [CommitOperationAdd(path_in_repo=p, path_or_fileobj=p.encode()) for p in paths],
        commit_message="parts",
        repo_type="dataset",
    )
    page_size, loopback_hub.tree_page_size = loopback_hub.tree_page_size, 2
    try:
        listed = [e.path for e in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True)]
        in_folder = [e.path for e in api.list_repo_tree(repo_id, "data", repo_type="dataset")]
    finally:
        loopback_hub.tree_page_size = page_size
    assert sorted(listed) == sorted([".gitattributes", "data", *paths])
    assert in_folder == paths
    assert any("cursor=" in line for line in loopback_hub.request_log)
    infos = api.get_paths_info(repo_id, ["data/part-3.txt", "data", "missing"], repo_type="dataset")
    assert {info.path for info in infos} == {"data/part-3.txt", "data"}

    # Branches and tags: a commit on a branch leaves `main` and the tag where they were.
    api.create_tag(repo_id, tag="v1.0", repo_type="dataset")
    api.create_branch(repo_id, branch="dev", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"dev only",
        path_in_repo="dev.txt",
        repo_id=repo_id,
        repo_type="dataset",
        revision="dev",
    )
    refs = api.list_repo_refs(repo_id, repo_type="dataset")
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [t.target_commit for t in refs.tags] == [loopback_hub.head(repo_id, "dataset")]
    assert "dev.txt" in loopback_hub.files(repo_id, "dataset", revision="dev")
    assert "dev.txt" not in loopback_hub.files(repo_id, "dataset", revision="v1.0")
    assert [c.title for c in api.list_repo_commits(repo_id, repo_type="dataset", revision="dev")][:2] == [
        "Upload dev.txt with huggingface_hub",
        "parts",
    ]


def test_from_pretrained_loads_pushed_model_with_equal_weights(loopback_hub):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    repo_id = loopback_hub.unique_repo_id("tiny-llama")
    model.push_to_hub(repo_id)
    assert loopback_hub.files(repo_id)["model.safetensors"].lfs

    reloaded = AutoModelForCausalLM.from_pretrained(repo_id)
    expected, actual = model.state_dict(), reloaded.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[name], actual[name]) for name in expected)


METRIC_MODULE = '''"""A minimal metric for the loopback Hub test."""

import datasets
import evaluate


class ExactMatchCount(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Counts exact matches.",
            citation="",
            inputs_description="predictions and references: lists of strings",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        return {"matches": sum(p == r for p, r in zip(predictions, references))}
'''


def test_evaluate_load_metric_from_a_space(loopback_hub, tmp_path):
    import evaluate
    from huggingface_hub import HfApi

    repo_id = loopback_hub.unique_repo_id("exact_match_count")
    module_name = repo_id.split("/")[1]
    (tmp_path / f"{module_name}.py").write_text(METRIC_MODULE)
    (tmp_path / "README.md").write_text("---\ntitle: Exact match count\nsdk: gradio\n---\n")
    api = HfApi()
    with pytest.raises(Exception, match="space_sdk"):
        api.create_repo(repo_id, repo_type="space")
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio")
    api.upload_folder(folder_path=tmp_path, repo_id=repo_id, repo_type="space")
    assert api.space_info(repo_id).sdk == "gradio"

    metric = evaluate.load(repo_id)
    assert metric.compute(predictions=["a", "b", "c"], references=["a", "x", "c"]) == {"matches": 2}


def test_errors_map_to_the_client_exceptions(loopback_hub):
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/missing", "config.json")

    # Writes need a token: without one the server answers 401.
    anonymous = HfApi(token=False)
    with pytest.raises(HfHubHTTPError) as excinfo:
        anonymous.create_repo(loopback_hub.unique_repo_id("anon"))
    assert excinfo.value.response.status_code == 401

    # A private repo looks missing without credentials and is readable with them.
    private = loopback_hub.unique_repo_id("private")
    api.create_repo(private, private=True)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(private)
    assert api.model_info(private).private is True
    with pytest.raises(RevisionNotFoundError):
        api.model_info(private, revision="no-such-branch")

    # A route the server does not know: a 404 JSON error, recorded so the gap is visible.
    request = urllib.request.Request(f"{loopback_hub.endpoint}/api/not-a-route", method="GET")
    with pytest.raises(urllib.error.HTTPError) as http_error:
        urllib.request.urlopen(request, timeout=10)
    assert http_error.value.code == 404
    assert b"does not implement" in http_error.value.read()
    assert loopback_hub.unhandled_requests[-1] == "GET /api/not-a-route"
    loopback_hub.unhandled_requests.pop()  # expected here: keep the fixture's gap warning for real gaps


def test_run_python_gives_a_fresh_interpreter_the_client_env(loopback_hub):
    from huggingface_hub import HfApi

    repo_id = loopback_hub.unique_repo_id("subprocess")
    HfApi().create_repo(repo_id)
    code = (
        "import sys\n"
        "from huggingface_hub import HfApi, constants\n"
        "assert not constants.HF_HUB_OFFLINE and constants.HF_HUB_DISABLE_XET\n"
        "HfApi().upload_file(path_or_fileobj=sys.argv[1].encode(), path_in_repo='hello.txt', repo_id=sys.argv[2])\n"
        "print(constants.ENDPOINT)\n"
    )
    result = loopback_hub.run_python(code, args=["hi there", repo_id])
    assert result.stdout.strip() == loopback_hub.endpoint
    assert loopback_hub.read_file(repo_id, "hello.txt") == b"hi there"


def test_standalone_server_persists_repos_across_restarts(loopback_hub, tmp_path):
    # `loopback_hub` only takes this process online; the clients below name their own endpoint.
    from huggingface_hub import HfApi, hf_hub_download

    with LoopbackHub(tmp_path / "hub") as hub:
        assert client_env(hub.endpoint)["HF_ENDPOINT"] == hub.endpoint
        api = HfApi(endpoint=hub.endpoint, token=DUMMY_TOKEN)
        api.create_repo("org/kept", repo_type="dataset")
        api.upload_file(
            path_or_fileobj=b"kept", path_in_repo="k.txt", repo_id="org/kept", repo_type="dataset"
        )
        sha = hub.head("org/kept", "dataset")
    with LoopbackHub(tmp_path / "hub") as hub:
        assert hub.head("org/kept", "dataset") == sha
        path = hf_hub_download(
            "org/kept",
            "k.txt",
            repo_type="dataset",
            endpoint=hub.endpoint,
            token=DUMMY_TOKEN,
            cache_dir=tmp_path / "cache",
        )
        assert Path(path).read_bytes() == b"kept"


def _call(hub: LoopbackHub, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
    """One raw HTTP request with a token (what a hostile client could send, unshaped by huggingface_hub)."""
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn.request(
        method, path, body=data, headers={"Authorization": f"Bearer {DUMMY_TOKEN}", **(headers or {})}
    )
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, payload


def test_names_and_lfs_ids_cannot_reach_outside_the_root(tmp_path):
    (tmp_path / "secret.txt").write_bytes(b"top secret")  # <root>/blobs/../../secret.txt
    victim = tmp_path / "victim"  # <root>/repos/models/../../../victim
    victim.mkdir()
    (victim / "repo.json").write_text(
        json.dumps({"type": "model", "id": "v/v", "private": False, "refs": {}})
    )
    with LoopbackHub(tmp_path / "hub") as hub:
        assert _call(hub, "POST", "/api/repos/create", {"organization": "org", "name": "ok"})[0] == 200
        # An LFS "oid" that is a path: neither committed (the file would serve the secret) nor verified.
        lines = [{"key": "header", "value": {"summary": "s"}},
                 {"key": "lfsFile", "value": {"path": "leak.txt", "algo": "sha256", "oid": "../secret.txt"}}]  # fmt: skip
        commit = "\n".join(json.dumps(line) for line in lines).encode()
        status, payload = _call(hub, "POST", "/api/models/org/ok/commit/main", commit)
        assert (status, b"64 hex digits" in payload) == (400, True)
        assert "leak.txt" not in hub.files("org/ok")
        assert _call(hub, "POST", "/lfs-verify", {"oid": "../secret.txt", "size": 10})[0] == 400
        # Organisation or repo names that climb out: refused on create and delete.
        for org, name in (("../../..", "planted"), ("org/..", "x"), ("..", "..")):
            assert _call(hub, "POST", "/api/repos/create", {"organization": org, "name": name})[0] == 400
        assert (
            _call(hub, "DELETE", "/api/repos/delete", {"organization": "../../..", "name": "victim"})[0]
            == 400
        )
        # ... and on every read, percent-encoded or not (decoded after routing).
        for path in ("/api/models/..%2F..%2F../victim", "/api/models/..%2F..%2F../victim/tree/main",
                     "/..%2F..%2F../victim/resolve/main/repo.json", "/api/models/org%2F../ok"):  # fmt: skip
            assert _call(hub, "GET", path)[0] == 400, path
    assert (victim / "repo.json").is_file()
    assert not (tmp_path / "planted").exists()


def test_a_stalled_or_oversized_request_does_not_hold_a_thread(tmp_path):
    with LoopbackHub(tmp_path / "hub", request_timeout_s=0.5, max_body_bytes=1000) as hub:
        # Headers that never end: the server hangs up after its timeout instead of waiting forever.
        with socket.create_connection((hub.host, hub.port), timeout=10) as stalled:
            stalled.sendall(b"GET /api/whoami-v2 HTTP/1.1\r\nHost: x\r\n")
            assert stalled.recv(1024) == b""
        # A body announced larger than the limit: answered 413 without reading it.
        status, payload = _call(hub, "POST", "/api/validate-yaml", headers={"Content-Length": str(10**9)})
        assert (status, b"limit of 1000 bytes" in payload) == (413, True)
        # An endless chunked body: 413 once past the limit, and the connection closed.
        with socket.create_connection((hub.host, hub.port), timeout=10) as endless:
            endless.sendall(
                b"POST /api/validate-yaml HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            endless.sendall(b"258\r\n" + b"x" * 600 + b"\r\n" + b"258\r\n" + b"x" * 600 + b"\r\n")
            answer = b""
            while chunk := endless.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413")


def test_a_foreign_host_is_refused(tmp_path):
    with LoopbackHub(tmp_path / "hub") as hub:
        for host, status in (
            ("evil.example", 400),
            (f"localhost:{hub.port}", 200),
            (f"127.0.0.1:{hub.port}", 200),
        ):
            connection = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
            connection.request("GET", "/api/whoami-v2", headers={"Host": host, "Authorization": "Bearer x"})
            response = connection.getresponse()
            assert response.status == status, host
            if status == 400:
                assert b"does not name the loopback Hub" in response.read()
            connection.close()


def test_the_process_is_offline_again_after_the_fixture():
    # Runs after the tests above (file order): `loopback_hub` must have restored the suite's offline mode.
    import datasets
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE
    assert datasets.config.HF_HUB_OFFLINE
    assert "HF_TOKEN" not in os.environ
