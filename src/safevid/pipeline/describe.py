"""Stage 1, describe: a video LMM writes a detailed, time-ordered description of each video.

The frames are re-sampled from the file with the build's `VideoSampling` (deterministic: the same
frames ingest saw) and sent with the ``describe`` prompt; the record keeps the text, the model, its
revision and the prompt hash. An empty description is dropped with its reason.
"""

from __future__ import annotations

from safevid.backends import ChatRequest, text_part, video_part
from safevid.pipeline.batching import chunks, commit, failure, pending, sampling_params
from safevid.pipeline.context import BuildContext
from safevid.pipeline.store import DROPPED, OK, Record, RecordStore

STAGE = "describe"


def run_describe(ctx: BuildContext, store: RecordStore) -> None:
    """Describe every ingested video of the store that has no description yet."""
    from safevid.video import VideoDecodeError, sample_video

    cfg = ctx.config.describe
    backend = ctx.backend(cfg.model)
    generator = ctx.generator(cfg.model, "describe")
    sampling = ctx.config.video_sampling
    todo = pending(store, store.iter_stage("video"), STAGE, lambda r: r.key)
    for batch in chunks(todo, cfg.batch_size):
        records: list[Record] = []
        requests, videos = [], []
        for video in batch:
            try:
                sampled = sample_video(video.data["path"], sampling)
            except VideoDecodeError as e:  # the file changed or vanished since ingest
                records.append(
                    Record(STAGE, video.key, video.key, DROPPED, "decode_error", {"error": str(e)})
                )
                continue
            prompt = ctx.render("describe", duration=sampled.duration, timestamps=sampled.timestamps)
            params = sampling_params(ctx, cfg.sampling, STAGE, video.key)
            requests.append(
                ChatRequest([{"role": "user", "content": [video_part(sampled), text_part(prompt)]}], params)
            )
            videos.append(video)
        results = backend.generate(requests, progress=ctx.progress) if requests else []
        for video, result in zip(videos, results, strict=True):
            if not result.ok:
                records.append(failure(STAGE, video.key, video.key, result, "describe"))
                continue
            text = result.text.strip()
            data = {"description": text, "generator": generator}
            if not text:
                records.append(Record(STAGE, video.key, video.key, DROPPED, "empty_description", data))
            else:
                records.append(Record(STAGE, video.key, video.key, OK, None, data))
        commit(ctx, store, STAGE, records)
