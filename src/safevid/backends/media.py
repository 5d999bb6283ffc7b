"""Media plumbing between safevid's video/image objects and what engines accept.

Over HTTP a video goes either as image frames (``image_url`` parts holding base64 JPEG/PNG) or as
one ``video_url`` part; sampled frames then travel as ``data:video/jpeg;base64,<f1>,<f2>,...``,
the frame-list form vLLM's media loader accepts, and a local file as a base64 data URL of its bytes.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

_MIME = {"jpeg": "image/jpeg", "png": "image/png"}


@dataclass
class FrameList:
    """Frames that arrived without a source video (a frame-list data URL): enough of the
    `SampledVideo` interface for the processors (`frames`, `sampled_fps`) and the cache (`timestamps`)."""

    frames: Any  # torch.uint8, (T, C, H, W)
    sampled_fps: float

    @property
    def timestamps(self) -> list[float]:
        return [i / self.sampled_fps for i in range(len(self.frames))]


def is_sampled_video(value: Any) -> bool:
    """Whether ``value`` is a `safevid.video.SampledVideo` (duck-typed: frames + timestamps)."""
    return hasattr(value, "frames") and hasattr(value, "timestamps")


def sample(source: str | Path, sampling: dict[str, Any] | None) -> Any:
    """Decode and sample a local video with the shared `VideoSampling` configuration."""
    from safevid.video import VideoSampling, sample_video

    return sample_video(source, VideoSampling.from_dict(sampling) if sampling else None)


def frame_bytes(frame: Any, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode one (C, H, W) uint8 tensor or a PIL image as JPEG/PNG bytes."""
    from PIL import Image

    image = frame if isinstance(frame, Image.Image) else Image.fromarray(frame.permute(1, 2, 0).numpy())
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(payload: bytes, mime: str) -> str:
    """A ``data:<mime>;base64,...`` URL of ``payload``."""
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def frames_as_image_urls(video: Any, fmt: str = "jpeg") -> list[str]:
    """One image data URL per sampled frame."""
    return [data_url(frame_bytes(f, fmt), _MIME[fmt]) for f in video.frames]


def frames_as_video_url(video: Any) -> str:
    """Sampled frames as vLLM's frame-list video data URL (JPEG frames, comma separated)."""
    frames = ",".join(base64.b64encode(frame_bytes(f, "jpeg")).decode("ascii") for f in video.frames)
    return f"data:video/jpeg;base64,{frames}"


def sampled_video_parts(
    video: Any, video_input: str = "frames", image_format: str = "jpeg"
) -> list[dict[str, Any]]:
    """Sampled frames as OpenAI wire content parts: one ``video_url`` part (``video_input="video_url"``)
    or one ``image_url`` part per frame (``"frames"``). Pure and picklable, so decode workers can run it."""
    if video_input == "video_url":
        return [{"type": "video_url", "video_url": {"url": frames_as_video_url(video)}}]
    return [
        {"type": "image_url", "image_url": {"url": url}} for url in frames_as_image_urls(video, image_format)
    ]


def file_as_data_url(path: str | Path, default_mime: str) -> str:
    """A data URL of a file's bytes, its MIME type guessed from the name (else ``default_mime``)."""
    path = Path(path)
    mime = mimetypes.guess_type(path.name)[0] or default_mime
    return data_url(path.read_bytes(), mime)


def image_url_of(image: Any, fmt: str = "jpeg") -> str:
    """An ``image_url`` URL for a PIL image, a local path, or an existing URL."""
    if isinstance(image, (str, Path)):
        text = str(image)
        if text.startswith(("http://", "https://", "data:")):
            return text
        return file_as_data_url(text.removeprefix("file://"), "image/png")
    return data_url(frame_bytes(image, fmt), _MIME[fmt])


def decode_data_url(url: str) -> tuple[str, bytes | list[bytes]]:
    """Split a data URL into its MIME type and bytes; a ``video/jpeg`` URL gives one bytes per frame."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:") or ";base64" not in header:
        raise ValueError(f"expected a base64 data URL, got {url[:40]!r}")
    mime = header[5:].split(";")[0]
    if mime == "video/jpeg":
        return mime, [base64.b64decode(frame) for frame in payload.split(",")]
    return mime, base64.b64decode(payload)


def load_image(url: str, max_pixels: int | None = None) -> Any:
    """A PIL image from a data URL or a local path (``file://`` or plain); see `open_image` for ``max_pixels``."""
    if url.startswith("data:"):
        _, payload = decode_data_url(url)
        if not isinstance(payload, bytes):
            raise ValueError("an image data URL holds one image, not a frame list")
        return open_image(io.BytesIO(payload), max_pixels)
    if url.startswith(("http://", "https://")):
        raise ValueError(f"remote media are not fetched by this server: {url[:80]}")
    return open_image(url.removeprefix("file://"), max_pixels)


def open_image(source: str | Path | BinaryIO, max_pixels: int | None = None) -> Any:
    """An RGB PIL image of at most ``max_pixels`` (aspect kept), never decoded larger than it needs to be.

    The size is read from the header first: an image over PIL's decompression-bomb bound
    (``Image.MAX_IMAGE_PIXELS``) is refused undecoded, and a JPEG over ``max_pixels`` is decoded at a reduced
    scale (``draft``: 1/2 to 1/8) before it is resized, so a 4K frame never sits in memory whole.

    Raises:
        ValueError: the image is too large to decode, or not an image.
    """
    from PIL import Image

    from safevid.video.sampling import target_size

    try:
        with warnings.catch_warnings():  # PIL's bomb warning: the size check below refuses such images
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)  # reads the header only
    except Image.DecompressionBombError as e:
        raise ValueError(f"image refused undecoded: {e}") from None
    width, height = image.size
    if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
        raise ValueError(
            f"image of {width}x{height} pixels is over the {Image.MAX_IMAGE_PIXELS} pixels decoded; send it "
            "down-scaled"
        )
    size = target_size(width, height, max_pixels)
    if size != (width, height):
        image.draft("RGB", size)  # JPEG only; a no-op for other formats
    if image.mode != "RGB":
        image = image.convert("RGB")
    else:
        image.load()  # not `convert`, which copies even to the same mode: one full-size copy fewer
    return image if image.size == size else image.resize(size, Image.Resampling.BICUBIC)


def load_image_part(value: Any) -> Any:
    """The value of an ``image`` / ``image_url`` part (a URL, ``{"url": ...}`` or an image) as an image."""
    if isinstance(value, dict):
        value = value["url"]
    return load_image(str(value)) if isinstance(value, str) else value


def template_messages(
    messages: list[dict[str, Any]], video_loader: Any, image_loader: Any
) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
    """Split chat messages into what a processor's chat template takes and the media it refers to.

    Each video or image part becomes a bare ``{"type": "video"}`` / ``{"type": "image"}`` placeholder, and its
    value, passed through `video_loader` / `image_loader`, is appended to the videos / images list in placeholder
    order: the order processors and vLLM match media to placeholders in.
    """
    out: list[dict[str, Any]] = []
    images: list[Any] = []
    videos: list[Any] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": [{"type": "text", "text": content}]})
            continue
        parts = []
        for part in content:
            kind = part["type"]
            if kind == "text":
                parts.append({"type": "text", "text": part["text"]})
            elif kind in ("video", "video_url"):
                videos.append(video_loader(part[kind]))
                parts.append({"type": "video"})
            elif kind in ("image", "image_url"):
                images.append(image_loader(part[kind]))
                parts.append({"type": "image"})
        out.append({"role": message["role"], "content": parts})
    return out, images, videos
