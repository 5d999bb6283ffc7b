"""The results block of a model card: ``model-index`` YAML, as the Hub and leaderboards read it.

Format choice: ``model-index`` (the model card's YAML metadata, written with `huggingface_hub.EvalResult`
and `ModelCardData`) — every Hub model page renders it, `huggingface_hub.ModelCard` round-trips it, and it
is one paste into an existing card. The newer ``.eval_results`` files are not yet read by the tools this
project targets; converting a ``model-index`` entry to them is mechanical if needed.

Each metric is reported as a percentage (harmlessness, attack success, over-refusal, refusal, undetermined)
or on its native scale (mean risk 1–5, mean helpfulness 1–10), with the judge named in ``source``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RESULTS_BEGIN", "RESULTS_END", "RESULT_METRICS", "eval_results", "model_index_yaml"]

# The results section of a model card lies between these markers (`safevid.evaluation.card_results`).
RESULTS_BEGIN = "<!-- safevid:results:begin -->"
RESULTS_END = "<!-- safevid:results:end -->"

# (metric key in metrics.json, display name, percentage?)
RESULT_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("harmlessness_rate", "Harmlessness rate (%)", True),
    ("attack_success_rate", "Attack success rate (%)", True),
    ("refusal_rate", "Refusal rate on harmful queries (%)", True),
    ("over_refusal_rate", "Over-refusal rate on benign-contrast queries (%)", True),
    ("undetermined_rate", "Undetermined rate (%)", True),
    ("mean_risk", "Mean risk (1-5)", False),
    ("mean_helpfulness", "Mean helpfulness (1-10)", False),
)


def eval_results(
    metrics: dict[str, Any], *, model_name: str, dataset_id: str, split: str = "test"
) -> list[Any]:
    """`huggingface_hub.EvalResult` entries for the overall SafeVidBench metrics (``None`` rates skipped)."""
    from huggingface_hub import EvalResult

    judge = metrics.get("judge", {})
    source = (
        f"safevid eval (judge: {judge.get('model') or judge.get('kind')}, threshold {judge.get('threshold')})"
    )
    out = []
    for key, name, percent in RESULT_METRICS:
        value = metrics.get(key)
        if value is None:
            continue
        out.append(
            EvalResult(
                task_type="video-text-to-text",
                task_name="Video safety",
                dataset_type=dataset_id,
                dataset_name="SafeVidBench",
                dataset_split=split,
                metric_type=key,
                metric_name=name,
                metric_value=round(100 * value, 2) if percent else round(value, 3),
                source_name=source,
                source_url="https://github.com/safevid/safevid",
            )
        )
    return out


def model_index_yaml(
    metrics: dict[str, Any], *, model_name: str, dataset_id: str, split: str = "test"
) -> str:
    """The ``model-index`` YAML block (without ``---`` fences) to paste into a model card's metadata."""
    from huggingface_hub import ModelCardData

    card = ModelCardData(
        model_name=model_name,
        eval_results=eval_results(metrics, model_name=model_name, dataset_id=dataset_id, split=split),
    )
    return card.to_yaml()
