"""Stage 4, responses: the chosen and the rejected reply of every query.

- **chosen**: rule-guided reasoning over the description (``chosen`` template, an aligned LLM): decline
  the harmful part, give a brief reason, offer a safe and useful alternative; for a benign-contrast
  query, simply help.
- **rejected**: from a non-aligned source: the target video LMM itself answering the query on the
  video frames with no safety prompt (``rejected_source: target``), or an LLM prompted to comply
  (``rejected_source: comply``, ``rejected_comply`` template); for a benign-contrast query, a
  needless refusal (``needless_refusal`` template).

The pair record holds the whole flat row (less the video bytes) with every generator's model, revision
and prompt hash, so the publish step needs nothing else.
"""

from __future__ import annotations

import json
from typing import Any

from safevid.backends import ChatRequest, text_part, video_part
from safevid.backends.media import sampled_video_parts
from safevid.pipeline.batching import Work, failure, pending, run_streamed, sampling_params
from safevid.pipeline.context import BuildContext
from safevid.pipeline.frames import frames_root
from safevid.pipeline.store import OK, Record, RecordStore
from safevid.prompts import fence_token
from safevid.video.frame_store import stored_video

STAGE = "pair"


def run_responses(ctx: BuildContext, store: RecordStore) -> None:
    """Generate the chosen and rejected replies of every query that has no pair yet."""
    cfg = ctx.config.responses
    taxonomy = ctx.taxonomy
    sampling = ctx.config.video_sampling
    sampling_json = json.dumps(sampling.to_dict(), sort_keys=True)
    chosen_backend = ctx.backend(cfg.chosen_model)
    rejected_backend = ctx.backend(cfg.rejected_model)
    refusal_backend = ctx.backend(cfg.refusal_model)
    rejected_template = "rejected_comply" if cfg.rejected_source == "comply" else None
    generators = {
        "chosen": ctx.generator(cfg.chosen_model, "chosen"),
        "rejected": ctx.generator(cfg.rejected_model, rejected_template),
        "needless_refusal": ctx.generator(cfg.refusal_model, "needless_refusal"),
    }
    cache: dict[str, Any] = {}  # the current video's records and frames (queries come video by video)

    def video_of(video_id: str) -> dict[str, Any]:
        if cache.get("id") != video_id:
            video = store.get("video", video_id)
            description = store.get("describe", video_id)
            classified = store.get("classify", video_id)
            if video is None or description is None or classified is None:
                raise RuntimeError(
                    f"{store.path}: a query of video {video_id} whose earlier records are missing"
                )
            cache.clear()
            upstream = {"describe": description.data["generator"], "classify": classified.data["generator"]}
            cache.update(
                id=video_id,
                video=video.data,
                description=description.data["description"],
                generators=upstream,
            )
        if cfg.rejected_source == "target" and "frames" not in cache:
            # The frames ingest stored (decoded again only if missing), encoded once for all the video's queries.
            sampled, _ = stored_video(frames_root(ctx), video_id, cache["video"]["path"], sampling.to_dict())
            encoding = rejected_backend.media_encoding()
            cache["frames"] = (
                sampled_video_parts(sampled, **encoding) if encoding is not None else [video_part(sampled)]
            )
        return cache

    def respond(query: Record) -> Work:
        q = query.data
        info = video_of(query.video_id)
        video, description, upstream = dict(info["video"]), info["description"], dict(info["generators"])
        sub = taxonomy.subcategory(q["subcategory"])
        rules = [taxonomy.rule(r) for r in q["rule_ids"]]
        harmful = taxonomy.query_style(q["query_style"]).harmful
        text = q["query"]
        context = {
            "subcategory": sub,
            "rules": rules,
            "description": description,
            "query": text,
            "fence": fence_token(description, text),
        }
        chosen_prompt = ctx.render("chosen", harmful=harmful, **context)
        chosen_request = ChatRequest(
            [{"role": "user", "content": chosen_prompt}],
            sampling_params(ctx, cfg.chosen_sampling, "chosen", query.key),
        )
        rejected_params = sampling_params(ctx, cfg.rejected_sampling, "rejected", query.key)
        if not harmful:
            source, backend = "needless_refusal", refusal_backend
            content: Any = ctx.render("needless_refusal", **context)
        elif cfg.rejected_source == "comply":
            source, backend = "rejected", rejected_backend
            content = ctx.render("rejected_comply", **context)
        else:
            source, backend = "rejected", rejected_backend
            content = [*info["frames"], text_part(text)]
        rejected_request = ChatRequest([{"role": "user", "content": content}], rejected_params)
        chosen, rejected = yield [(chosen_backend, chosen_request), (backend, rejected_request)]
        if not chosen.ok:
            return [failure(STAGE, query.key, query.video_id, chosen, "chosen")]
        if not rejected.ok:
            return [failure(STAGE, query.key, query.video_id, rejected, source)]
        row = {
            "id": query.key,
            "video_id": query.video_id,
            "prompt": q["query"],
            "chosen": chosen.text.strip(),
            "rejected": rejected.text.strip(),
            "domain": q["domain"],
            "subcategory": q["subcategory"],
            "query_style": q["query_style"],
            "description": description,
            "rule_ids": list(q["rule_ids"]),
            "frame_timestamps": video["frame_timestamps"],
            "sampled_fps": video["sampled_fps"],
            "sampling": sampling_json,
            "generators": json.dumps(
                {
                    **upstream,
                    "query": q["generator"],
                    "chosen": generators["chosen"],
                    "rejected": generators[source],
                },
                sort_keys=True,
            ),
        }
        data = {
            "row": row,
            "rejected_source": source,
            "video_path": video["path"],
            "video_suffix": video["suffix"],
        }
        return [Record(STAGE, query.key, query.video_id, OK, None, data)]

    todo = pending(store, store.iter_stage("query"), STAGE, lambda r: r.key)
    run_streamed(ctx, store, STAGE, (respond(query) for query in todo), commit_every=cfg.batch_size)
