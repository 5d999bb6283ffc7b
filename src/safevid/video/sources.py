"""Normalise every accepted video input into one `VideoSource`.

Accepted: a path (``str``/``Path``), encoded ``bytes``, a ``datasets`` ``Video`` value (the
``torchcodec.decoders.VideoDecoder`` that ``datasets`` decodes to, or its ``{"path", "bytes"}``
dict form), or already-decoded frames (list / NumPy array / tensor).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from safevid.video.errors import VideoDecodeError

# transformers assumes 24 fps for a video without metadata (`VideoMetadata.sampled_fps`); frames
# given without a rate get the same, so both libraries place them at the same times.
DEFAULT_FRAMES_FPS = 24.0


@dataclass
class VideoSource:
    """One video input, resolved. Exactly one of `path`, `data`, `decoder`, `frames` is set.

    Attributes:
        name (`str`): printable name for errors and metadata (the path, or ``<N bytes>``...).
        path (`str`, *optional*): a local file or a pipe.
        data (`bytes`, *optional*): the encoded file.
        decoder (*optional*): an open ``torchcodec.decoders.VideoDecoder`` with no known source.
        frames (`torch.Tensor`, *optional*): decoded frames, uint8 (T, C, H, W).
        frames_fps (`float`): frame rate of `frames`.
        regular_file (`bool`): `path` is a regular file (a pipe can block forever).
    """

    name: str
    path: str | None = None
    data: bytes | None = None
    decoder: Any = None
    frames: Any = None
    frames_fps: float = DEFAULT_FRAMES_FPS
    regular_file: bool = True

    @property
    def portable(self) -> bool:
        """Whether the source can be sent to another process (an open decoder cannot)."""
        return self.decoder is None


def resolve_source(source: Any, frames_fps: float | None = None) -> VideoSource:
    """Turn any accepted input into a `VideoSource`, rejecting what can never decode.

    Raises:
        VideoDecodeError: missing file, directory, empty file or empty bytes.
        TypeError: an input of a type that is not a video at all.
    """
    if isinstance(source, (str, os.PathLike)):
        return _from_path(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise VideoDecodeError("<0 bytes>", "the video bytes are empty")
        return VideoSource(name=f"<{len(data)} bytes>", data=data)
    if isinstance(source, dict):
        return _from_dict(source)
    if _is_torchcodec_decoder(source):
        encoded = getattr(source, "_hf_encoded", None)  # set by datasets' Video feature
        if isinstance(encoded, dict) and (
            encoded.get("bytes") or (encoded.get("path") and os.path.isfile(encoded["path"]))
        ):
            return _from_dict(encoded)
        label = getattr(source.metadata, "path", None)
        return VideoSource(name=f"<VideoDecoder {label}>" if label else "<VideoDecoder>", decoder=source)
    if _looks_like_frames(source):
        return _from_frames(source, DEFAULT_FRAMES_FPS if frames_fps is None else frames_fps)
    raise TypeError(
        f"Unsupported video input of type {type(source).__name__}: pass a path, bytes, a datasets Video "
        "value (VideoDecoder or {'path', 'bytes'} dict) or frames (list/array/tensor)."
    )


def _from_path(path: str) -> VideoSource:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise VideoDecodeError(path, "file not found") from None
    except OSError as error:
        raise VideoDecodeError(path, f"cannot stat the file ({error.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise VideoDecodeError(path, "is a directory, not a video file")
    regular = stat.S_ISREG(info.st_mode)
    if regular and info.st_size == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes)")
    return VideoSource(name=path, path=path, regular_file=regular)


def _from_dict(value: dict[str, Any]) -> VideoSource:
    unknown = set(value) - {"path", "bytes"}
    if unknown:
        raise TypeError(f"A video dict has keys 'path' and 'bytes' only, got extra keys {sorted(unknown)}.")
    data, path = value.get("bytes"), value.get("path")
    if data:
        source = resolve_source(data)
        # The path still names the row's video in errors, as datasets keeps it for that purpose.
        source.name = f"{path} ({source.name})" if path else source.name
        return source
    if path:
        return _from_path(str(path))
    raise VideoDecodeError(repr(value), "the video dict has neither 'bytes' nor 'path'")


def _is_torchcodec_decoder(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "VideoDecoder" and cls.__module__.startswith("torchcodec")


def _looks_like_frames(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return len(value) > 0
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _from_frames(value: Any, fps: float) -> VideoSource:
    import numpy as np
    import torch

    if not fps > 0:
        raise ValueError(f"frames_fps must be positive, got {fps!r}.")
    if isinstance(value, (list, tuple)):
        value = np.stack([np.asarray(frame) for frame in value])
    frames = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
    name = f"<frames {tuple(frames.shape)}>"
    if frames.dtype != torch.uint8:
        raise VideoDecodeError(name, f"frames must be uint8 RGB, got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise VideoDecodeError(name, "frames must be a non-empty (T, C, H, W) or (T, H, W, C) stack")
    if frames.shape[1] != 3 and frames.shape[-1] == 3:
        frames = frames.permute(0, 3, 1, 2)
    if frames.shape[1] != 3:
        raise VideoDecodeError(name, "frames must have 3 (RGB) channels")
    return VideoSource(name=name, frames=frames.contiguous(), frames_fps=float(fps))


__all__ = ["DEFAULT_FRAMES_FPS", "VideoSource", "resolve_source"]
