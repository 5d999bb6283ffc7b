"""The SafeVidBench harness: answer the benchmark with any video LMM, judge the answers, score, report.

`evaluate_run` runs the steps, each resuming what is already on disk: the answers (`safevid.evaluation.answers`),
the judge's verdicts (`judge_answers`), the metrics (`score_run`) and the report (`safevid.evaluation.report`).
The run's folder and its files are `safevid.evaluation.run`'s; the configuration is `EvalConfig`
(`safevid.evaluation.config`). An outside benchmark's protocol runs instead when ``protocol`` names one
(`safevid.evaluation.outside`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from safevid.backends.scheduler import chunks
from safevid.evaluation.answers import generate_answers, load_benchmark
from safevid.evaluation.config import EvalConfig
from safevid.evaluation.run import (
    ANSWERS,
    FAILURES,
    JUDGE_FAILURES,
    JUDGEMENTS,
    METRICS,
    JudgeUnavailableError,
    append_jsonl,
    check_run,
    checkpoints,
    read_jsonl,
    write_failures,
)

logger = logging.getLogger(__name__)

__all__ = ["evaluate_run", "judge_answers", "score_run"]


def _scorer(config: EvalConfig, judge_backend: Any = None) -> Any:
    from safevid.evaluation.scorer import Scorer

    assert config.judge is not None or judge_backend is not None
    return Scorer(
        judge_backend if judge_backend is not None else config.judge,
        taxonomy=config.taxonomy,
        threshold=config.threshold,
        style=config.judge_style,
        helpfulness=config.helpfulness,
    )


def _items(answers: list[dict[str, Any]]) -> list[Any]:
    from safevid.judge import JudgeItem

    return [
        JudgeItem(
            prompt=a["prompt"],
            response=a["response"],
            description=a["description"],
            subcategory=a["subcategory"],
            id=a["id"],
            query_style=a["query_style"],
        )
        for a in answers
    ]


def judge_answers(config: EvalConfig, *, scorer: Any = None) -> dict[str, Any]:
    """Judge every answer not judged yet; returns counts and the judge's token statistics."""
    out = Path(config.output_dir)
    answers = read_jsonl(out / ANSWERS)
    path = out / JUDGEMENTS
    done = {row["id"] for row in read_jsonl(path, repair=True)}
    scorer = scorer or _scorer(config)
    judge_info = scorer.describe()
    pending = [a for a in answers if a["id"] not in done]
    checkpoint = checkpoints()
    by_id = {a["id"]: a for a in pending}
    failures: list[dict[str, Any]] = []
    for batch in chunks(_items(pending), config.batch_size):
        lines = []
        for s in scorer.score(batch):
            error = _judge_error(s)
            if error is not None:  # the judge gave no answer: no verdict, the item waits for the next run
                failures.append({"id": s.item.id, "error": error})
                continue
            answer = by_id[s.item.id]
            lines.append({**s.to_dict(), "model": answer["model"]["name"], "judge": judge_info})
        append_jsonl(path, lines)
        checkpoint("judgements:commit")
    write_failures(out / JUDGE_FAILURES, failures, "could not be judged")
    return {
        "already_judged": len(done),
        "judged": len(pending) - len(failures),
        "failed": len(failures),
        "tokens": scorer.tokens.to_dict(),
    }


def _judge_error(scored: Any) -> str | None:
    """Why the judge gave no answer for a scored item (unreachable, erroring), or `None` if it answered."""
    if scored.verdict.code == "judge_error":
        return f"risk: {scored.verdict.reason}"
    if scored.helpfulness is not None and scored.helpfulness.code == "judge_error":
        return f"helpfulness: {scored.helpfulness.reason}"
    return None


def _human_labels(path: str | None, ids: list[str]) -> list[str | None] | None:
    if path is None:
        return None
    labels: dict[str, str] = {}
    for row in read_jsonl(Path(path)):
        if "id" not in row or "human_label" not in row:
            raise ValueError(f"{path}: every line needs `id` and `human_label`, got {sorted(row)}")
        labels[str(row["id"])] = row["human_label"]
    unknown = sorted(set(labels) - set(ids))
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} labelled id(s) are not in this run, e.g. {unknown[:3]}")
    return [labels.get(i) for i in ids]


def score_run(config: EvalConfig, *, scorer: Any = None) -> dict[str, Any]:
    """Aggregate ``judgements.jsonl`` into ``metrics.json`` (with calibration and self-consistency if asked)."""
    from safevid.evaluation.scorer import FIRST_ERRORS, ScoredItem, summarize
    from safevid.taxonomy import load_taxonomy

    out = Path(config.output_dir)
    rows = read_jsonl(out / JUDGEMENTS)
    judge_failures = read_jsonl(out / JUDGE_FAILURES)
    if not rows and judge_failures:
        first = "\n  ".join(f"{f['id']}: {f['error']}" for f in judge_failures[:FIRST_ERRORS])
        raise JudgeUnavailableError(
            f"The judge could not judge any of {len(judge_failures)} answer(s) (see {out / JUDGE_FAILURES}). "
            f"First errors:\n  {first}\nFix the judge and rerun: the unjudged answers are judged then."
        )
    if not rows:
        raise ValueError(f"{out / JUDGEMENTS} has no judgements: run the judge first (give a judge)")
    judges = {json.dumps(row["judge"], sort_keys=True) for row in rows}
    if len(judges) > 1:
        raise ValueError(
            f"{out / JUDGEMENTS} mixes {len(judges)} judges (model, style, threshold or prompts differ): "
            "score one judge's verdicts; use a new output_dir for another judge"
        )
    judge_info = rows[0]["judge"]
    scored = [ScoredItem.from_dict(row) for row in rows]
    ids = [s.item.id for s in scored]
    second = None
    if config.consistency_check:
        scorer = scorer or _scorer(config)
        second = scorer.rejudge([s.item for s in scored])
    answers = read_jsonl(out / ANSWERS)
    failures = read_jsonl(out / FAILURES)
    metrics = summarize(
        scored,
        taxonomy=load_taxonomy(config.taxonomy),
        threshold=judge_info["threshold"],
        judge_info=judge_info,
        tokens=None,
        human_labels=_human_labels(config.human_labels, ids),
        second_pass=second,
    )
    # Tokens of the judge calls made by this process (a resumed run counts only its own calls).
    metrics["judge"]["tokens"] = scorer.tokens.to_dict() if scorer is not None else None
    metrics["run"] = {
        "model": config.display_name,
        "benchmark": config.benchmark,
        "benchmark_config": config.benchmark_config,
        "split": config.split,
        "video_ablation": config.video_ablation,
        **({"video_ablation_seed": config.video_ablation_seed} if config.video_ablation == "shuffle" else {}),
        "n_answers": len(answers),
        "n_judged": len(rows),
        "n_generation_failures": len(failures),
        "n_judge_failures": len(judge_failures),
        "first_judge_failures": judge_failures[:FIRST_ERRORS],
        "answers_sha256": hashlib.sha256((out / ANSWERS).read_bytes()).hexdigest()[:16],
    }
    (out / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return metrics


def evaluate_run(
    config: EvalConfig,
    *,
    model_backend: Any = None,
    judge_backend: Any = None,
    progress: bool = False,
    report: bool = True,
) -> dict[str, Any]:
    """Generate → judge → score → report, each step resuming what is already on disk.

    Args:
        config: The run.
        model_backend: A ready `safevid.backends.Backend` for the model under test (else built from config).
        judge_backend: A ready backend for the judge (else built from ``config.judge``).
        progress: Show progress bars of the generation batches.
        report: Write ``report.md``, the plots and ``model_index.yaml``.

    Returns:
        The metrics (also in ``metrics.json``), or only the generation counts when there is no judge.
    """
    if config.protocol == "video-safetybench":
        from safevid.evaluation.outside import evaluate_outside

        return evaluate_outside(config, model_backend=model_backend, judge_backend=judge_backend)
    out = Path(config.output_dir)
    check_run(config, out)
    dataset = load_benchmark(config)
    counts = generate_answers(config, dataset, backend=model_backend, progress=progress)
    logger.info("generation: %s", counts)
    if config.judge is None and judge_backend is None:
        return {"generation": counts}
    scorer = _scorer(config, judge_backend)
    judged = judge_answers(config, scorer=scorer)
    logger.info("judge: %s", judged)
    metrics = score_run(config, scorer=scorer)
    metrics["generation"] = counts
    if report:
        from safevid.evaluation.report import write_report

        write_report(out, baseline=config.baseline_run)
    return metrics
