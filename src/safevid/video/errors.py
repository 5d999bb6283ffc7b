"""The one error that every video failure becomes."""

from __future__ import annotations


class VideoDecodeError(ValueError):
    """A video could not be probed or sampled.

    The message names the source (a path, ``<bytes: N>``, ...) and the cause, e.g. ``"file not
    found"``, ``"no video stream (streams: audio/aac)"`` or ``"timed out after 5.0 s"``.

    Attributes:
        source (`str`): a printable name of the input.
        cause (`str`): what went wrong, in words.
    """

    def __init__(self, source: str, cause: str):
        self.source = source
        self.cause = cause
        super().__init__(f"Cannot decode video {source}: {cause}")

    def __reduce__(self):
        # Keeps the two-argument constructor when the error crosses the timeout worker's pipe.
        return (type(self), (self.source, self.cause))
