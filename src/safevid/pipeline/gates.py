"""Stage 5, quality gates per pair: empty or identical pairs, and the safety judge.

- A pair whose chosen or rejected reply is empty, or whose two replies are identical (after
  normalising whitespace and case), is dropped.
- The judge (`safevid.judge.Judge`, pluggable by config) checks that the chosen reply is judged safe
  and, for harmful query styles, that the rejected one is judged unsafe. For benign-contrast pairs the
  rejected reply must be a refusal and the chosen one must not be (`safevid.scoring.detect_refusal`).
  ``judge_mode``:

  - ``enforce``: a failed check drops the pair, counted by reason (an undetermined verdict, e.g. a
    judge output that does not parse, is a failure: never counted as safe);
  - ``record``: verdicts and the would-be drop reason are stored with the pair, nothing is dropped
    (for tiny random-weight judges, whose verdicts are meaningless);
  - ``off``: no judge calls.

  A judge that cannot be reached (refused connection, timeout, HTTP 408/429/5xx, after the backend's own
  retries) gave no verdict: the pair gets a retryable ``error`` record, stays pending, and the next run judges
  it; the build reports the failure and exits non-zero (`safevid.pipeline.run`). A request the judge refuses
  outright (e.g. HTTP 400) drops the pair with the reason ``judge_status_400``; only an answer that does not
  parse is an ``undetermined`` verdict.

Set-level gates (duplicate queries, benchmark decontamination) need the whole set and run in the
publish pass (`safevid.pipeline.dedup`), so a sharded build gates exactly like a single worker.
"""

from __future__ import annotations

from typing import Any

from safevid.judge import Judge, JudgeItem
from safevid.pipeline.batching import Work, failure, pending, run_streamed
from safevid.pipeline.context import BuildContext
from safevid.pipeline.store import DROPPED, OK, Record, RecordStore
from safevid.scoring import detect_refusal

STAGE = "gate"


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def basic_problem(row: dict[str, Any]) -> str | None:
    """Why a pair is unusable whatever the judge says: empty replies or identical replies."""
    if not row["chosen"].strip():
        return "empty_chosen"
    if not row["rejected"].strip():
        return "empty_rejected"
    if _normal(row["chosen"]) == _normal(row["rejected"]):
        return "identical_pair"
    return None


def make_judge(ctx: BuildContext) -> Judge:
    """The build's `safevid.judge.Judge`, from the ``gates`` section of its config."""
    cfg = ctx.config.gates
    return Judge(
        ctx.backend(cfg.judge_model),
        ctx.taxonomy,
        cfg.threshold,
        style=cfg.judge_style,
        min_mass=cfg.min_mass,
        top_logprobs=cfg.top_logprobs,
        max_tokens=cfg.judge_max_tokens,
        prompts=ctx.prompts,
    )


def judge_problem(harmful: bool, chosen: Any, rejected: Any, row: dict[str, Any]) -> str | None:
    """The first failed judge check of a pair, as a drop reason; `None` if the pair passes."""
    if chosen is not None and not chosen.verdict.is_safe:
        return f"judge_chosen_{chosen.verdict.label}"
    if harmful:
        if rejected is not None and not rejected.verdict.is_unsafe:
            return f"judge_rejected_{rejected.verdict.label}"
        return None
    if detect_refusal(row["rejected"]).kind == "none":
        return "benign_rejected_not_a_refusal"
    if detect_refusal(row["chosen"]).kind == "full":
        return "benign_chosen_refuses"
    return None


def run_gates(ctx: BuildContext, store: RecordStore) -> None:
    """Gate every pair of the store that has no gate record yet."""
    cfg = ctx.config.gates
    judge = make_judge(ctx) if cfg.judge_mode != "off" else None
    judge_info = None
    if judge is not None:
        judge_info = {**ctx.generator(cfg.judge_model, judge.template), "prompt_sha": judge.prompt_sha}

    def gate(pair: Record) -> Work:
        row = pair.data["row"]
        data: dict[str, Any] = {"judge_mode": cfg.judge_mode, "judge": judge_info}
        problem = basic_problem(row)
        if problem is None and judge is not None:
            harmful = ctx.taxonomy.query_style(row["query_style"]).harmful
            sides = {"chosen": f"{pair.key}:c", **({"rejected": f"{pair.key}:r"} if harmful else {})}
            items = {
                side: JudgeItem(row["prompt"], row[side], row["description"], row["subcategory"], item_id)
                for side, item_id in sides.items()
            }
            results = yield [(judge.backend, judge.request(item)) for item in items.values()]
            failed = next((r for r in results if not r.ok and r.error.kind != "parse"), None)
            if failed is not None:  # no answer, so no verdict: retried by the next run when retryable
                return [failure(STAGE, pair.key, pair.video_id, failed, "judge", data)]
            found = {
                side: judge.verdict(item, result)
                for (side, item), result in zip(items.items(), results, strict=True)
            }
            data["verdicts"] = {side: result.to_dict() for side, result in found.items()}
            judged = judge_problem(harmful, found.get("chosen"), found.get("rejected"), row)
            if cfg.judge_mode == "enforce":
                problem = judged
            else:
                data["would_drop"] = judged
        status = OK if problem is None else DROPPED
        return [Record(STAGE, pair.key, pair.video_id, status, problem, data)]

    todo = pending(store, store.iter_stage("pair"), STAGE, lambda r: r.key)
    run_streamed(ctx, store, STAGE, (gate(pair) for pair in todo), commit_every=cfg.batch_size)
