"""Test-wide setup: offline Hub, private caches, shared tiny fixtures.

The environment is set at import time of this file, before any test module imports
huggingface_hub / datasets / transformers, because those libraries read it once at import.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="safevid-tests-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf_home")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Tiny models are built once and cached across sessions (they are deterministic); tests that
# need a fresh build pass their own directory.
os.environ.setdefault("SAFEVID_HOME", str(Path(__file__).resolve().parent.parent / ".cache" / "safevid"))
for secret in ("HF_TOKEN", "OPENAI_API_KEY"):
    os.environ.pop(secret, None)
