"""The results block of a model card: ``model-index`` YAML, as the Hub and leaderboards read it.

Format choice: ``model-index`` (the model card's YAML metadata, written with `huggingface_hub.EvalResult`
and `ModelCardData`) — every Hub model page renders it, `huggingface_hub.ModelCard` round-trips it, and it
is one paste into an existing card. The newer ``.eval_results`` files are not yet read by the tools this
project targets; converting a ``model-index`` entry to them is mechanical if needed.

Each metric is reported as a percentage (harmlessness, attack success, over-refusal, refusal, undetermined)
or on its native scale (mean risk 1–5, mean helpfulness 1–10), with the judge named in ``source``.

A Video-SafetyBench run (``safevid eval --protocol video-safetybench``) reports its own metrics (`VSB_METRICS`:
RJScore's attack success rate and mean risk, safevid's refusal rate) under the dataset name
``Video-SafetyBench``, with the protocol, the judge, its log-probability approximation and the threshold in
``source``, so its entries never merge with SafeVidBench's.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "RESULT_METRICS",
    "VSB_METRICS",
    "benchmark_name",
    "eval_results",
    "model_index_yaml",
]

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
# Video-SafetyBench's metrics, keys of metrics.json's ``rjscore``.
VSB_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("attack_success_rate", "Attack success rate, RJScore (%)", True),
    ("mean_risk", "Mean risk, RJScore (1-5)", False),
    ("refusal_rate", "Refusal rate (%)", True),
)


def benchmark_name(metrics: dict[str, Any]) -> str:
    """The benchmark a run's metrics are of: ``Video-SafetyBench`` or ``SafeVidBench``."""
    return "Video-SafetyBench" if metrics.get("protocol") == "video-safetybench" else "SafeVidBench"


def eval_results(
    metrics: dict[str, Any], *, model_name: str, dataset_id: str, split: str = "test"
) -> list[Any]:
    """`huggingface_hub.EvalResult` entries for a run's overall metrics (``None`` rates skipped): SafeVidBench's,
    or Video-SafetyBench's for a ``video-safetybench`` run (module docstring)."""
    from huggingface_hub import EvalResult

    judge = metrics.get("judge", {})
    judged_by = judge.get("model") or judge.get("kind")
    if metrics.get("protocol") == "video-safetybench":
        values, table = metrics.get("rjscore", {}), VSB_METRICS
        source = (
            f"safevid eval --protocol video-safetybench (RJScore; judge: {judged_by}, "
            f"{judge.get('distribution')}, threshold {judge.get('threshold')})"
        )
    else:
        values, table = metrics, RESULT_METRICS
        source = f"safevid eval (judge: {judged_by}, threshold {judge.get('threshold')})"
    out = []
    for key, name, percent in table:
        value = values.get(key)
        if value is None:
            continue
        out.append(
            EvalResult(
                task_type="video-text-to-text",
                task_name="Video safety",
                dataset_type=dataset_id,
                dataset_name=benchmark_name(metrics),
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
