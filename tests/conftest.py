"""Test-wide setup: offline Hub, private caches, shared tiny fixtures.

The environment is set at import time of this file, before any test module imports
huggingface_hub / datasets / transformers, because those libraries read it once at import.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest

from safevid.testing.hub import LoopbackHub  # stdlib + yaml only: imports no HF library

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="safevid-tests-"))
atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf_home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Tiny models are built once and cached across sessions (they are deterministic); tests that
# need a fresh build pass their own directory.
os.environ.setdefault("SAFEVID_HOME", str(Path(__file__).resolve().parent.parent / ".cache" / "safevid"))
for secret in ("HF_TOKEN", "OPENAI_API_KEY", "SAFEVID_API_KEY"):
    os.environ.pop(secret, None)


# ==== Loopback Hub (section owned by safevid.testing.hub) ====================================================
# One loopback Hub serves the whole session. It starts here, before any test module imports huggingface_hub,
# datasets or evaluate, because those read HF_ENDPOINT once at import: every Hub call of the session then goes
# to 127.0.0.1 (a stray online call fails fast with a 404 instead of waiting on DNS). Tests stay offline
# (HF_HUB_OFFLINE=1) unless they take the `loopback_hub` fixture, which goes online for the test only.
# Keep this block above any conftest code that imports those libraries.
_LOOPBACK_HUB = LoopbackHub(_SESSION_DIR / "loopback-hub").start()
atexit.register(_LOOPBACK_HUB.stop)
os.environ["HF_ENDPOINT"] = _LOOPBACK_HUB.endpoint
os.environ["HF_HUB_DISABLE_XET"] = "1"  # with Xet on, uploads would bypass the LFS API the server speaks


@pytest.fixture
def loopback_hub():
    """The session's `LoopbackHub`, with this process online to it (dummy token set) for this test.

    Use real client code in-process (`push_to_hub`, `load_dataset("org/x")`, `from_pretrained`,
    `evaluate.load("org/space")`), `loopback_hub.run_python(code)` for a fresh interpreter wired to it, and
    `loopback_hub.unique_repo_id("name")` for repo ids (the server is shared by the session).
    """
    seen = len(_LOOPBACK_HUB.unhandled_requests)
    with _LOOPBACK_HUB.online():
        yield _LOOPBACK_HUB
    if unhandled := _LOOPBACK_HUB.unhandled_requests[seen:]:
        warnings.warn(f"Loopback Hub: routes it does not implement were called: {unhandled}", stacklevel=1)


# ==== end of the Loopback Hub section ======================================================================


# ==== Small shared fixtures (built once per module that uses them) =========================================
@pytest.fixture(scope="module")
def test_video(tmp_path_factory):
    """A 1 s, 8 fps, 64×48 H.264 test clip."""
    from safevid.testing.videos import make_test_video

    return make_test_video(
        tmp_path_factory.mktemp("videos") / "clip.mp4", duration=1.0, fps=8.0, width=64, height=48
    )


@pytest.fixture(scope="module")
def sampled_video(test_video):
    """`test_video` sampled at 4 frames."""
    from safevid.video import VideoSampling, sample_video

    return sample_video(test_video, VideoSampling(num_frames=4))


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    """A 4-row demo preference dataset folder (`safevid.testing.demo_data.build_demo_preference_set`)."""
    from safevid.testing.demo_data import build_demo_preference_set

    return build_demo_preference_set(tmp_path_factory.mktemp("demo-set"), num_rows=4)
