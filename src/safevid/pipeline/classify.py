"""Stage 2, classify: the description → taxonomy labels (multi-label) with the rule ids that apply.

Design (choice-constrained, so every backend yields a valid answer, tiny random models included):

1. **Labels by vote.** One request per video, constrained to the choice ``benign`` or one subcategory
   id of the taxonomy, sampled ``votes`` times (``n`` choices, temperature ``classify.temperature``,
   seeded by the video id). Each subcategory with at least ``min_votes`` votes becomes a label, most
   voted first, at most ``max_labels``; none → the video is benign. Sampling several answers from the
   model's own distribution is how one constrained choice expresses several plausible risks, without
   a free-form JSON list that small or unaligned models break.
2. **Rules by vote.** For each label whose subcategory has several rules, a second constrained request
   over that subcategory's rule ids (``rule_votes`` samples) cites the rules the video triggers (every
   voted rule, most voted first); a subcategory with one rule cites it.

Domain and severity come from the taxonomy, so they are always consistent with the label. Outputs are
validated (the backends parse every choice; an answer outside the choices is a parse failure, recorded
with its reason) and the record keeps the vote counts for audit.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from safevid.backends import ChatRequest, SamplingParams, StructuredOutput
from safevid.pipeline.batching import Work, failure, pending, run_streamed
from safevid.pipeline.context import BuildContext
from safevid.pipeline.store import OK, Record, RecordStore
from safevid.prompts import fence_token

STAGE = "classify"
BENIGN = "benign"


def tally(votes: list[str], *, min_votes: int, max_labels: int) -> list[tuple[str, int]]:
    """The labels of a vote: non-benign answers with ``min_votes`` or more, most voted (then by id) first."""
    counts = Counter(v for v in votes if v != BENIGN)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(label, count) for label, count in ranked if count >= min_votes][:max_labels]


def run_classify(ctx: BuildContext, store: RecordStore) -> None:
    """Classify every described video of the store that has no classification yet."""
    cfg = ctx.config.classify
    backend = ctx.backend(cfg.model)
    taxonomy = ctx.taxonomy
    choices = (BENIGN, *taxonomy.subcategory_ids)
    generator = ctx.generator(cfg.model, "classify")
    generator["rules_prompt_sha"] = ctx.prompt_sha("classify_rules")

    def classify(record: Record) -> Work:
        description = record.data["description"]
        prompt = ctx.render(
            "classify", taxonomy=taxonomy, description=description, fence=fence_token(description)
        )
        [result] = yield [
            (
                backend,
                ChatRequest(
                    [{"role": "user", "content": prompt}],
                    _params(ctx, cfg.votes, cfg.temperature, f"labels|{record.key}"),
                    StructuredOutput(choice=choices, name="subcategory"),
                ),
            )
        ]
        if not result.ok:
            return [failure(STAGE, record.key, record.video_id, result, "classify")]
        votes = [c.parsed for c in result.choices]
        labels: list[dict[str, Any]] = []
        rule_requests, rule_positions = [], []
        for subcategory_id, count in tally(votes, min_votes=cfg.min_votes, max_labels=cfg.max_labels):
            sub = taxonomy.subcategory(subcategory_id)
            label = {"subcategory": sub.id, "domain": sub.domain, "severity": sub.severity, "votes": count}
            if len(sub.rules) == 1:
                label["rule_ids"], label["rule_votes"] = [sub.rules[0].id], {}
            else:
                prompt = ctx.render(
                    "classify_rules", subcategory=sub, description=description, fence=fence_token(description)
                )
                rule_requests.append(
                    (
                        backend,
                        ChatRequest(
                            [{"role": "user", "content": prompt}],
                            _params(ctx, cfg.rule_votes, cfg.temperature, f"rules|{record.key}|{sub.id}"),
                            StructuredOutput(choice=tuple(r.id for r in sub.rules), name="rule_id"),
                        ),
                    )
                )
                rule_positions.append(len(labels))
            labels.append(label)
        rule_results = (yield rule_requests) if rule_requests else []
        for position, rule_result in zip(rule_positions, rule_results, strict=True):
            if not rule_result.ok:
                return [failure(STAGE, record.key, record.video_id, rule_result, "classify_rules")]
            rule_votes = Counter(c.parsed for c in rule_result.choices)
            ranked = sorted(rule_votes.items(), key=lambda kv: (-kv[1], kv[0]))
            labels[position]["rule_ids"] = [rule for rule, _ in ranked]
            labels[position]["rule_votes"] = dict(sorted(rule_votes.items()))
        data = {
            "labels": labels,
            "benign": not labels,
            "votes": dict(sorted(Counter(votes).items())),
            "generator": generator,
        }
        return [Record(STAGE, record.key, record.video_id, OK, None, data)]

    todo = pending(store, store.iter_stage("describe"), STAGE, lambda r: r.key)
    run_streamed(ctx, store, STAGE, (classify(r) for r in todo), commit_every=cfg.batch_size)


def _params(ctx: BuildContext, n: int, temperature: float, key: str) -> SamplingParams:
    # A choice needs a handful of tokens (the longest id); the constraint ends generation after it.
    return SamplingParams(
        max_tokens=48,
        temperature=temperature,
        n=n,
        seed=ctx.seed_for(STAGE, key) if temperature > 0 else None,
    )
