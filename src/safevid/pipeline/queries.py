"""Stage 3, queries: rule-driven user queries per (video, subcategory, style, variant).

For every label of a classified video and every query style of ``queries.per_style`` (counts per
style, styles defined by the taxonomy), the ``query`` template gives the LLM the subcategory's cited
rules and example intents, the style's definition, and the description, and asks for one query
grounded in what the video shows. The record key is the hash of (video id, subcategory, style,
variant): it is also the id of the preference pair the query becomes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from safevid.backends import ChatRequest
from safevid.pipeline.batching import Work, failure, pending, run_streamed, sampling_params
from safevid.pipeline.context import BuildContext, stable_hash
from safevid.pipeline.store import DROPPED, OK, Record, RecordStore
from safevid.prompts import fence_token

STAGE = "query"


@dataclass
class QuerySlot:
    """One query to write: its record key, video, label, style and variant."""

    key: str
    video_id: str
    label: dict[str, Any]
    style: str
    variant: int
    count: int
    description: str


def pair_id(video_id: str, subcategory: str, style: str, variant: int) -> str:
    """The id of a query and of the pair built on it."""
    return stable_hash(video_id, subcategory, style, variant)


def _slots(ctx: BuildContext, store: RecordStore) -> Iterator[QuerySlot]:
    per_style = {s: n for s, n in ctx.config.queries.per_style.items() if n > 0}
    for record in store.iter_stage("classify"):
        labels = record.data["labels"]
        if not labels:
            continue
        description = store.get("describe", record.key)
        assert description is not None, f"classified video {record.key} has no description"
        for label in labels:
            for style, count in per_style.items():
                for variant in range(count):
                    key = pair_id(record.key, label["subcategory"], style, variant)
                    yield QuerySlot(
                        key, record.key, label, style, variant, count, description.data["description"]
                    )


def run_queries(ctx: BuildContext, store: RecordStore) -> None:
    """Write every query slot of the store's classified videos that has no query yet."""
    cfg = ctx.config.queries
    backend = ctx.backend(cfg.model)
    generator = ctx.generator(cfg.model, "query")
    taxonomy = ctx.taxonomy

    def write(slot: QuerySlot) -> Work:
        sub = taxonomy.subcategory(slot.label["subcategory"])
        prompt = ctx.render(
            "query",
            subcategory=sub,
            domain=taxonomy.domain(sub.domain),
            rules=[taxonomy.rule(r) for r in slot.label["rule_ids"]],
            style=taxonomy.query_style(slot.style),
            variant=slot.variant,
            count=slot.count,
            description=slot.description,
            fence=fence_token(slot.description),
        )
        params = sampling_params(ctx, cfg.sampling, STAGE, slot.key)
        [result] = yield [(backend, ChatRequest([{"role": "user", "content": prompt}], params))]
        data = {
            "video_id": slot.video_id,
            "subcategory": slot.label["subcategory"],
            "domain": slot.label["domain"],
            "severity": slot.label["severity"],
            "rule_ids": slot.label["rule_ids"],
            "query_style": slot.style,
            "variant": slot.variant,
        }
        if not result.ok:
            return [failure(STAGE, slot.key, slot.video_id, result, "query", data)]
        data["query"] = result.text.strip()
        data["generator"] = generator
        status, reason = (OK, None) if data["query"] else (DROPPED, "empty_query")
        return [Record(STAGE, slot.key, slot.video_id, status, reason, data)]

    todo = pending(store, _slots(ctx, store), STAGE, lambda s: s.key)
    run_streamed(ctx, store, STAGE, (write(slot) for slot in todo), commit_every=cfg.batch_size)
