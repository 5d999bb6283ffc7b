"""Stage 1, describe: a video LMM writes a detailed, time-ordered description of each video.

The frames are those ingest sampled with the build's `VideoSampling`, read back from the build's frame
store (`safevid.pipeline.frames`; decoded again only if the entry is missing) in the build's decode worker
processes (``decode_workers``, `safevid.backends.prepared`), which also encode them for the wire, ahead of the
requests (a local engine, which takes the frames themselves, memory-maps them in-process): the main process only
streams requests (`safevid.pipeline.batching.run_streamed`). Each goes out with the ``describe`` prompt; the
record keeps the text, the model, its revision and the prompt hash. An empty
description is dropped with its reason.
"""

from __future__ import annotations

import logging
from collections import Counter

from safevid.backends import ChatRequest, text_part, video_part
from safevid.backends.prepared import PREPARE_VIDEO, PreparedVideo
from safevid.pipeline.batching import Work, failure, pending, run_streamed, sampling_params
from safevid.pipeline.context import BuildContext
from safevid.pipeline.frames import frames_root
from safevid.pipeline.store import DROPPED, OK, Record, RecordStore
from safevid.video.frame_store import stored_video

STAGE = "describe"
logger = logging.getLogger(__name__)


def run_describe(ctx: BuildContext, store: RecordStore) -> None:
    """Describe every ingested video of the store that has no description yet, its frames prepared in the
    build's decode pool (`BuildContext.decode_pool`)."""
    from safevid.video import VideoDecodeError

    cfg = ctx.config.describe
    backend = ctx.backend(cfg.model)
    generator = ctx.generator(cfg.model, "describe")
    sampling = ctx.config.video_sampling
    root = str(frames_root(ctx))
    encoding = backend.media_encoding()
    decoded: Counter[bool] = Counter()

    def describe(video: Record, outcome: PreparedVideo | BaseException) -> Work:
        if isinstance(outcome, VideoDecodeError):  # the file changed or vanished since ingest
            return [Record(STAGE, video.key, video.key, DROPPED, "decode_error", {"error": str(outcome)})]
        if isinstance(outcome, BaseException):
            raise outcome
        decoded[outcome.decoded] += 1
        metadata = outcome.metadata
        prompt = ctx.render("describe", duration=metadata["duration"], timestamps=metadata["timestamps"])
        frames = outcome.parts if outcome.parts is not None else [video_part(outcome.sampled)]
        params = sampling_params(ctx, cfg.sampling, STAGE, video.key)
        request = ChatRequest([{"role": "user", "content": [*frames, text_part(prompt)]}], params)
        [result] = yield [(backend, request)]
        if not result.ok:
            return [failure(STAGE, video.key, video.key, result, "describe")]
        text = result.text.strip()
        data = {"description": text, "generator": generator}
        if not text:
            return [Record(STAGE, video.key, video.key, DROPPED, "empty_description", data)]
        return [Record(STAGE, video.key, video.key, OK, None, data)]

    def in_process(video: Record) -> PreparedVideo | VideoDecodeError:
        # A local engine takes the frames themselves, which ingest stored: nothing to encode ahead.
        try:
            sampled, was_decoded = stored_video(root, video.key, video.data["path"], sampling.to_dict())
        except VideoDecodeError as error:
            return error
        return PreparedVideo(sampled.metadata(), None, was_decoded, sampled)

    todo = pending(store, store.iter_stage("video"), STAGE, lambda r: r.key)
    if encoding is None:
        units = (describe(v, in_process(v)) for v in todo)
        run_streamed(ctx, store, STAGE, units, commit_every=cfg.batch_size)
    else:
        pool = ctx.decode_pool()
        prepared = pool.imap_unordered(
            PREPARE_VIDEO,
            todo,
            lambda v: (root, v.key, v.data["path"], sampling.to_dict(), encoding),
            name_of=lambda v: v.data["path"],
            # A video ready for every request slot, besides those being prepared: answers land in bursts
            # (latencies are heavy-tailed), and each slot freed must find its next video waiting.
            ahead=pool.workers + backend.config.max_concurrency,
        )
        units = (describe(v, o) for v, o in prepared)
        run_streamed(ctx, store, STAGE, units, commit_every=cfg.batch_size)
    logger.info(
        "describe: %d video(s) read from the frame store, %d decoded again", decoded[False], decoded[True]
    )
