"""`safevid.video.references`: a dataset's video cell becomes bytes or an allowed local file, nothing else."""

from __future__ import annotations

import http.server
import io
import os
import tarfile
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from safevid.video import sample_video
from safevid.video.references import VideoReferenceError, VideoReferences


@pytest.fixture
def dataset_dir(tmp_path, test_video):
    folder = tmp_path / "set"
    (folder / "clips").mkdir(parents=True)
    (folder / "clips" / "a.mp4").write_bytes(test_video.read_bytes())
    return folder


def _refs(tmp_path, **kwargs) -> VideoReferences:
    return VideoReferences(cache_dir=str(tmp_path / "cache"), **kwargs)


def test_bytes_pass_through_and_relative_paths_resolve_in_the_dataset_folder(
    tmp_path, dataset_dir, monkeypatch
):
    refs = _refs(tmp_path, dataset_dir=str(dataset_dir))
    assert refs.resolve(b"abc", row_name="r") == b"abc"
    assert refs.resolve({"bytes": b"abc", "path": "/etc/passwd"}, row_name="r") == b"abc"
    monkeypatch.chdir(tmp_path)  # the working directory has a clips/a.mp4 too: it must not be the one read
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"wrong")
    assert refs.resolve("clips/a.mp4", row_name="r") == dataset_dir / "clips" / "a.mp4"
    assert (
        refs.resolve({"path": "clips/../clips/a.mp4", "bytes": None}, row_name="r")
        == dataset_dir / "clips/a.mp4"
    )
    root = tmp_path / "elsewhere"
    root.mkdir()
    (root / "clips").mkdir()
    (root / "clips" / "a.mp4").write_bytes(b"root")
    assert (
        _refs(tmp_path, dataset_dir=str(dataset_dir), video_root=str(root)).resolve(
            "clips/a.mp4", row_name="r"
        )
        == root / "clips" / "a.mp4"
    )


@pytest.mark.parametrize("cell", ["{secret}", "file://{secret}", "../outside/secret.mp4", "clips/link.mp4"])
def test_cells_leaving_the_dataset_are_refused_unless_allowed(tmp_path, dataset_dir, cell):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.mp4"
    secret.write_bytes(b"secret")
    (dataset_dir / "clips" / "link.mp4").symlink_to(secret)
    cell = cell.format(secret=secret)
    with pytest.raises(VideoReferenceError) as caught:
        _refs(tmp_path, dataset_dir=str(dataset_dir)).resolve(cell, row_name="my/set [train] row 7")
    error = caught.value
    assert error.reason == "local_path_not_allowed"
    message = str(error)
    assert message.startswith(f"my/set [train] row 7: video {cell!r}")
    assert f"--allowed-local-media-path {outside}" in message
    allowed = _refs(tmp_path, dataset_dir=str(dataset_dir), allowed_local_media_path=(str(outside),))
    assert Path(os.path.realpath(allowed.resolve(cell, row_name="r"))) == secret
    # A root that merely shares a prefix does not allow it.
    with pytest.raises(VideoReferenceError, match="not read"):
        _refs(
            tmp_path, dataset_dir=str(dataset_dir), allowed_local_media_path=(str(outside) + "-not",)
        ).resolve(cell, row_name="r")


def test_missing_empty_unsupported_and_baseless_cells_name_the_cause(tmp_path, dataset_dir):
    refs = _refs(tmp_path, dataset_dir=str(dataset_dir))
    cases = {
        "clips/none.mp4": "missing_file",
        "": "empty_cell",
        "s3://bucket/a.mp4": "unsupported_cell",
    }
    for cell, reason in cases.items():
        with pytest.raises(VideoReferenceError) as caught:
            refs.resolve(cell, row_name="row 1")
        assert caught.value.reason == reason
    with pytest.raises(VideoReferenceError) as caught:
        refs.resolve(12, row_name="row 1")
    assert caught.value.reason == "unsupported_cell"
    with pytest.raises(VideoReferenceError, match="set `video_root`") as caught:
        _refs(tmp_path).resolve("clips/a.mp4", row_name="row 1")
    assert caught.value.reason == "no_base_folder"


@pytest.fixture
def http_server(tmp_path, test_video):
    served = tmp_path / "served"
    served.mkdir()
    (served / "a.mp4").write_bytes(test_video.read_bytes())
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    thread.join()


def test_urls_are_downloaded_once_within_the_limits(tmp_path, http_server, test_video):
    base, server = http_server
    refs = _refs(tmp_path, allow_private_urls=True)  # the test server is on loopback
    first = refs.resolve(f"{base}/a.mp4", row_name="r")
    assert first.read_bytes() == test_video.read_bytes()
    assert first.parent == tmp_path / "cache" / "downloads"
    server.shutdown()  # cached: the second resolve does not ask the server
    assert refs.resolve(f"{base}/a.mp4", row_name="r") == first


def test_url_limits_and_failures_are_download_failed(tmp_path, http_server):
    base, _ = http_server
    with pytest.raises(VideoReferenceError, match="over the 100-byte download limit") as caught:
        _refs(tmp_path, max_download_bytes=100, allow_private_urls=True).resolve(
            f"{base}/a.mp4", row_name="r"
        )
    assert caught.value.reason == "download_failed"
    with pytest.raises(VideoReferenceError, match="404") as caught:
        _refs(tmp_path, allow_private_urls=True).resolve(f"{base}/missing.mp4", row_name="r")
    assert caught.value.reason == "download_failed"
    assert not list((tmp_path / "cache" / "downloads").iterdir())  # nothing partial left behind


class _HostileHandler(http.server.BaseHTTPRequestHandler):
    """A trickling body, and redirects to another scheme and to the loopback server itself."""

    def do_GET(self):
        if self.path == "/small.mp4":
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"video")
            return
        if self.path == "/trickle.mp4":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):  # a byte every 50 ms: each read succeeds, the whole takes 50 s
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.send_response(302)
        targets = {"/to-ftp": "ftp://127.0.0.1/a.mp4", "/to-small": "/small.mp4"}
        self.send_header("Location", targets.get(self.path, "/trickle.mp4"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_downloads_keep_a_wall_clock_deadline_http_redirects_and_public_addresses(
    tmp_path, http_server, monkeypatch
):
    hostile = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    hostile.daemon_threads = True
    threading.Thread(target=hostile.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{hostile.server_address[1]}"
    try:
        allowed = _refs(tmp_path, allow_private_urls=True, download_deadline_s=1.0)
        with pytest.raises(
            VideoReferenceError, match="not downloaded within the 1 s download limit"
        ) as caught:
            allowed.resolve(f"{base}/trickle.mp4", row_name="r")
        assert caught.value.reason == "download_failed"
        with pytest.raises(VideoReferenceError, match="only http\\(s\\) redirects are followed") as caught:
            allowed.resolve(f"{base}/to-ftp", row_name="r")
        assert caught.value.reason == "url_not_allowed"
        assert (
            allowed.resolve(f"{base}/to-small", row_name="r").read_bytes() == b"video"
        )  # http redirects work
        # A loopback (or private) host is refused unless allowed: by the option or the environment.
        served, _ = http_server
        monkeypatch.delenv("SAFEVID_ALLOW_PRIVATE_URLS", raising=False)
        for url in (f"{served}/a.mp4", f"http://localhost:{hostile.server_address[1]}/a.mp4"):
            with pytest.raises(
                VideoReferenceError, match=r"resolves to .*, a loopback or private address"
            ) as caught:
                _refs(tmp_path).resolve(url, row_name="r")
            assert caught.value.reason == "url_not_allowed"
            assert "SAFEVID_ALLOW_PRIVATE_URLS=1" in caught.value.cause
        monkeypatch.setenv("SAFEVID_ALLOW_PRIVATE_URLS", "1")
        assert _refs(tmp_path).resolve(f"{served}/a.mp4", row_name="r").is_file()
    finally:
        hostile.shutdown()
    assert not [p for p in (tmp_path / "cache" / "downloads").iterdir() if p.suffix == ".part"]


def test_a_path_too_long_to_look_up_is_a_reference_error(tmp_path, dataset_dir):
    cell = "clips/" + "a" * 5000 + ".mp4"
    for refs in (
        _refs(tmp_path, dataset_dir=str(dataset_dir)),
        _refs(tmp_path, allowed_local_media_path=("/",)),
    ):
        with pytest.raises(VideoReferenceError, match="cannot be looked up") as caught:
            refs.resolve(cell if refs.dataset_dir else "/" + cell, row_name="row 9")
        assert caught.value.reason == "unreadable_path"
        assert "characters)" in str(
            caught.value
        )  # the message shows the start of the cell, not 5,000 characters
        assert len(str(caught.value)) < 400


def _tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_archive_members_are_extracted_once_and_decode(tmp_path, dataset_dir, test_video):
    _tar(dataset_dir / "videos.tar.gz", {"video/1_Violent_Crimes/a.mp4": test_video.read_bytes()}, "w:gz")
    refs = _refs(tmp_path, dataset_dir=str(dataset_dir))
    path = refs.resolve("videos.tar.gz::video/1_Violent_Crimes/a.mp4", row_name="r")
    assert path.read_bytes() == test_video.read_bytes()
    assert sample_video(path).frames.shape[0] == 8
    path.write_bytes(b"marker")  # extracted once: a second resolve reuses the folder
    configured = _refs(tmp_path, dataset_dir=str(dataset_dir), archive="videos.tar.gz")
    assert configured.resolve("video/1_Violent_Crimes/a.mp4", row_name="r").read_bytes() == b"marker"
    for cell, reason in [
        ("videos.tar.gz::video/none.mp4", "missing_archive_member"),
        ("videos.tar.gz::../set/clips/a.mp4", "bad_archive_member"),
        ("none.tar::a.mp4", "missing_file"),
    ]:
        with pytest.raises(VideoReferenceError) as caught:
            refs.resolve(cell, row_name="r")
        assert caught.value.reason == reason, cell


def test_an_archive_with_a_member_escaping_is_refused_whole(tmp_path, dataset_dir):
    _tar(dataset_dir / "evil.tar", {"ok.mp4": b"x", "../escaped.mp4": b"escaped"})
    link = tarfile.TarInfo("link.mp4")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with tarfile.open(dataset_dir / "linked.tar", "w") as tar:
        tar.addfile(link)
    refs = _refs(tmp_path, dataset_dir=str(dataset_dir))
    for archive in ("evil.tar", "linked.tar"):
        with pytest.raises(VideoReferenceError, match=f"cannot extract .*{archive} safely") as caught:
            refs.resolve(f"{archive}::ok.mp4", row_name="r")
        assert caught.value.reason == "bad_archive"
    assert not (tmp_path / "cache" / "escaped.mp4").exists()
    assert not list((tmp_path / "cache" / "archives").iterdir())  # no partial extraction left


def test_an_absolute_archive_member_stays_in_the_extraction_folder(tmp_path, dataset_dir):
    target = tmp_path / "escaped.mp4"
    _tar(dataset_dir / "abs.tar", {str(target): b"escaped"})
    path = _refs(tmp_path, dataset_dir=str(dataset_dir)).resolve(
        f"abs.tar::{str(target).lstrip('/')}", row_name="r"
    )
    assert path.read_bytes() == b"escaped"
    assert (tmp_path / "cache" / "archives") in path.parents
    assert not target.exists()


def test_relative_cells_of_a_hub_dataset_are_its_files(loopback_hub, tmp_path, test_video):
    from huggingface_hub import HfApi

    repo_id = loopback_hub.unique_repo_id("refs")
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_file(
        path_or_fileobj=str(test_video), path_in_repo="clips/a.mp4", repo_id=repo_id, repo_type="dataset"
    )
    refs = _refs(tmp_path, hub_dataset=repo_id)
    assert refs.resolve("clips/a.mp4", row_name="r").read_bytes() == test_video.read_bytes()
    with pytest.raises(VideoReferenceError) as caught:
        refs.resolve("clips/none.mp4", row_name="r")
    assert caught.value.reason == "missing_file"
    with pytest.raises(VideoReferenceError) as caught:
        refs.resolve("../../etc/passwd", row_name="r")
    assert caught.value.reason == "local_path_not_allowed"


def test_a_folder_published_as_an_archive_beside_it_is_read_from_the_archive(
    tmp_path, dataset_dir, test_video
):
    """align-anything's layout: cells ``./videos/<name>`` next to ``videos.zip`` (or ``.tar.gz``) and no folder."""
    import zipfile

    with zipfile.ZipFile(dataset_dir / "videos.zip", "w") as bundle:
        bundle.writestr("videos/a.mp4", test_video.read_bytes())
    _tar(dataset_dir / "flat.tar.gz", {"b.mp4": b"flat member"}, "w:gz")  # members without the folder name
    refs = _refs(tmp_path, dataset_dir=str(dataset_dir))
    assert refs.resolve("./videos/a.mp4", row_name="r").read_bytes() == test_video.read_bytes()
    assert refs.resolve("flat/b.mp4", row_name="r").read_bytes() == b"flat member"
    assert (tmp_path / "cache" / "archives") in refs.resolve("videos/a.mp4", row_name="r").parents
    assert not (dataset_dir / "videos").exists()
    with pytest.raises(VideoReferenceError, match=r"videos\.zip has no member videos/none\.mp4") as caught:
        refs.resolve("videos/none.mp4", row_name="r")
    assert caught.value.reason == "missing_archive_member"
    for cell in ("other/a.mp4", "x/../videos/../../a.mp4"):  # no archive of that name; a cell climbing out
        with pytest.raises(VideoReferenceError) as caught:
            refs.resolve(cell, row_name="r")
        assert caught.value.reason in ("missing_file", "local_path_not_allowed")


def test_a_zip_holding_a_link_is_refused_whole(tmp_path, dataset_dir):
    import stat
    import zipfile

    link = zipfile.ZipInfo("videos/link.mp4")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16  # how zip stores a symbolic link (its target as data)
    with zipfile.ZipFile(dataset_dir / "videos.zip", "w") as bundle:
        bundle.writestr("videos/a.mp4", b"video")
        bundle.writestr(link, "a.mp4")
    with pytest.raises(VideoReferenceError, match=r"'videos/link\.mp4' is a link") as caught:
        _refs(tmp_path, dataset_dir=str(dataset_dir)).resolve("videos/a.mp4", row_name="r")
    assert caught.value.reason == "bad_archive"
    assert not list((tmp_path / "cache" / "archives").iterdir())  # nothing of it kept
