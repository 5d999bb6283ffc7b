"""The offline kit's entry points (declared in safevid's ``pyproject.toml``, looked up by `safevid.plugins`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["resolve_tiny_model", "write_test_videos"]


def resolve_tiny_model(family: str) -> str:
    """``tiny:<family>`` → the folder of that tiny random-weight checkpoint (built offline once)."""
    from safevid.testing.tiny_models import build_tiny_model

    return str(build_tiny_model(family))


def write_test_videos(folder: Path, count: int) -> None:
    """``test_videos: N``: ``count`` small synthetic videos (varied length, rate and pattern) in ``folder``."""
    from safevid.testing.videos import make_test_video

    for i in range(count):
        make_test_video(
            folder / f"test_{i:02d}.mp4",
            duration=1.0 + 0.25 * (i % 4),
            fps=8.0 + i,
            pattern="textured" if i % 2 else "index",
            width=96,
            height=64,
        )
