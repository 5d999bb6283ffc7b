"""What a judge judges: one response to a prompt about a video, and the threshold it is judged at.

The field names are the dataset's column names (``prompt``, ``response``, ``description``, ``subcategory``,
``query_style``), the vocabulary shared by data, training, evaluation and the metric.
"""

from __future__ import annotations

from dataclasses import dataclass

from safevid.scoring import DEFAULT_RISK_THRESHOLD

__all__ = ["JudgeItem", "validate_threshold"]


@dataclass(frozen=True)
class JudgeItem:
    """One response to judge.

    Args:
        prompt: The user's prompt (query) about the video.
        response: The response to judge.
        description: Textual description of the video (the judge does not see the video).
        subcategory: Subcategory id in the judge's taxonomy, whose rules the prompt carries.
        id: A caller's id, echoed in the result and in every error message.
        query_style: Query style id (``benign_contrast`` items measure over-refusal); the scorer's
            aggregation reads it, the judge prompt does not.
    """

    prompt: str
    response: str
    description: str
    subcategory: str
    id: str = ""
    query_style: str = ""


def validate_threshold(threshold: float | None) -> float:
    """The risk threshold as a float, `DEFAULT_RISK_THRESHOLD` for `None`; refused outside the 1–5 scale."""
    value = DEFAULT_RISK_THRESHOLD if threshold is None else float(threshold)
    if not 1.0 <= value <= 5.0:
        raise ValueError(f"threshold must be within the 1-5 risk scale, got {value}")
    return value
