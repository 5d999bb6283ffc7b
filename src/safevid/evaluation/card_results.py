"""Write a SafeVidBench run's results into a model's card, where the Hub shows them.

The card is a local model folder's ``README.md`` or a Hub model repo's; both go through
`huggingface_hub.ModelCard`, so the YAML metadata and the body round-trip as the Hub reads them. Two parts
change and nothing else:

- the ``model-index`` metadata: this run's `huggingface_hub.EvalResult` entries (`eval_results`) replace the
  entries equal to them but for the value (same task, dataset, split, metric), and every other entry stays;
- the results section: the block between ``RESULTS_BEGIN`` and ``RESULTS_END`` (the placeholder that
  `safevid.training.model_card` writes) is replaced by this run's table, or a ``## Results`` section with
  the block is appended to a card that has none.

So a rerun updates the card instead of appending to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safevid.evaluation.report import ablation_sentence
from safevid.evaluation.results import RESULTS_BEGIN, RESULTS_END, eval_results

__all__ = ["results_block", "update_card", "write_results_to_card"]


def write_results_to_card(
    run_dir: str | Path, target: str | Path, *, commit_message: str | None = None
) -> str:
    """Put the results of the scored run in ``run_dir`` into the card of ``target``.

    Args:
        run_dir (`str` or `Path`): a `safevid eval` output folder holding ``metrics.json``.
        target (`str` or `Path`): a local model folder (its ``README.md``; created if absent) or a Hub model
            repo id (pushed as one commit; the token comes from the usual `huggingface_hub` login).
        commit_message (`str`, *optional*): the Hub commit message.

    Returns:
        The card's location: the ``README.md`` path, or the Hub repo id.
    """
    from huggingface_hub import ModelCard
    from huggingface_hub.errors import EntryNotFoundError

    metrics_file = Path(run_dir) / "metrics.json"
    if not metrics_file.exists():
        raise FileNotFoundError(f"{metrics_file} not found: score the run first (safevid eval with a judge)")
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    run = metrics.get("run", {})
    name = run.get("model") or Path(run_dir).name
    local = Path(target)
    if local.is_dir():
        readme = local / "README.md"
        card = ModelCard.load(readme) if readme.exists() else _new_card(name)
        update_card(card, metrics, model_name=name)
        card.save(readme)
        return str(readme)
    try:
        card = ModelCard.load(str(target), repo_type="model")
    except EntryNotFoundError:
        card = _new_card(name)
    update_card(card, metrics, model_name=name)
    card.push_to_hub(
        str(target),
        repo_type="model",
        commit_message=commit_message or f"SafeVidBench results of {name}",
    )
    return str(target)


def update_card(card: Any, metrics: dict[str, Any], *, model_name: str) -> None:
    """Merge ``metrics`` into ``card`` (a `huggingface_hub.ModelCard`) in place: see the module docstring."""
    run = metrics.get("run", {})
    dataset = run.get("benchmark") or "safevidbench"
    new = eval_results(metrics, model_name=model_name, dataset_id=dataset, split=run.get("split", "test"))
    kept = [old for old in card.data.eval_results or [] if not any(old.is_equal_except_value(n) for n in new)]
    card.data.eval_results = kept + new
    card.data.model_name = card.data.model_name or model_name
    block = results_block(metrics, new)
    text = card.text
    start, end = text.find(RESULTS_BEGIN), text.find(RESULTS_END)
    if start != -1 and end > start:
        text = text[:start] + block + text[end + len(RESULTS_END) :]
    else:
        text = text.rstrip("\n") + f"\n\n## Results\n\n{block}\n"
    card.text = text


def results_block(metrics: dict[str, Any], results: list[Any]) -> str:
    """The marked results section: what was evaluated, by which judge, and one row per reported metric."""
    run, judge, counts = metrics.get("run", {}), metrics.get("judge", {}), metrics.get("counts", {})
    judged_by = judge.get("model") or judge.get("kind") or "an LLM judge"
    rows = "\n".join(f"| {r.metric_name} | {r.metric_value} |" for r in results)
    items = f", {run['n_judged']} items" if run.get("n_judged") is not None else ""
    count_text = ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else ""
    return "\n".join(
        [
            RESULTS_BEGIN,
            f"SafeVidBench (`{run.get('benchmark') or 'safevidbench'}`, split `{run.get('split', 'test')}`"
            f"{items}), judged by `{judged_by}` with risk threshold {judge.get('threshold')}.",
            "",
            *([ablation_sentence(run), ""] if run.get("video_ablation") else []),
            "| metric | value |",
            "|---|---|",
            rows,
            "",
            *([f"Verdicts: {count_text}.", ""] if count_text else []),
            "_Written by `safevid eval`; the same numbers are in this card's `model-index` metadata._",
            RESULTS_END,
        ]
    )


def _new_card(model_name: str) -> Any:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(tags=["safevid", "video", "safety"])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n# {model_name}\n")
