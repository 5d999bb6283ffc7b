"""The build's frames: each video decoded once per sampling, then read back by every stage that needs it.

Ingest samples every video to check it decodes and stores the frames in a `safevid.video.frame_store.FrameStore`
under ``<work_dir>/frames`` (`frames_root`; keyed by the video id, the SHA-256 of its bytes, and the sampling).
Describe then prepares its requests in a `safevid.video.pool.DecodePool` with
`safevid.backends.prepared.prepare_video`: the frames come from the store (decoded again only when the entry is
missing, e.g. a work folder from before this store), and are encoded for the wire there too, off the main
process. A local engine (no wire encoding) reads the entries in-process: memory-mapped, they cost nothing to
read. The target model's rejected replies read the same entries, and so can the evaluation harness
(``safevid eval --frames-dir <work_dir>/frames``): a SafeVidBench row's ``video_id`` and ``sampling`` name the
entry its ingest wrote.

Disk: an entry holds the sampled frames uncompressed (``num_frames × height × width × 3`` bytes after the
``max_pixels`` budget). The folder is not needed once the build is published and may be deleted; a rerun
then decodes what it needs again.
"""

from __future__ import annotations

from pathlib import Path

from safevid.pipeline.context import BuildContext


def frames_root(ctx: BuildContext) -> Path:
    """The build's frame store folder."""
    return ctx.config.work_path / "frames"
