"""Video sampling shared by data build, training and evaluation.

One `VideoSampling` configuration says how to turn a video into frames; `sample_video` applies
it to a path, bytes, a ``datasets`` ``Video`` value or decoded frames, seeking to uniformly
spaced timestamps with torchcodec (default) or PyAV, and returns a `SampledVideo` whose metadata
(timestamps, indices, source and sampled fps, ...) travels with every dataset row. Every failure
is a `VideoDecodeError` naming the source and the cause.

Importing this package is cheap: torch, torchcodec and PyAV load on first use.
"""

from __future__ import annotations

from safevid.video.api import probe_video, sample_video
from safevid.video.errors import VideoDecodeError
from safevid.video.sampled import SampledVideo, VideoProbe
from safevid.video.sampling import VideoSampling

__all__ = ["SampledVideo", "VideoDecodeError", "VideoProbe", "VideoSampling", "probe_video", "sample_video"]
