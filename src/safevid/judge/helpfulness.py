"""The helpfulness judge (1–10): its request to a backend judge and the verdict read from the answer.

It rides on a risk `Judge` (same backend, style, prompt folder and token budget): ``"choice"`` asks for one of
the digits ``1``–``10`` under a choice constraint, ``"text"`` for a free answer ending with
``HELPFULNESS_SCORE: n`` (parsed by `safevid.scoring.parse_helpfulness`).
"""

from __future__ import annotations

from typing import Any

from safevid.backends import ChatRequest, ChatResult, SamplingParams, StructuredOutput
from safevid.judge.items import JudgeItem
from safevid.prompts import fence_token
from safevid.scoring import HelpfulnessVerdict, parse_helpfulness

__all__ = ["HELPFULNESS_CHOICES", "helpfulness_request", "helpfulness_verdict"]

HELPFULNESS_CHOICES = tuple(str(i) for i in range(1, 11))


def helpfulness_request(judge: Any, item: JudgeItem) -> ChatRequest:
    """The chat request judging the helpfulness of one item, in ``judge``'s style (a `safevid.judge.Judge`)."""
    choice = judge.style == "choice"
    prompt = judge.prompts.render(
        "judge_helpfulness_choice" if choice else "judge_helpfulness",
        query=item.prompt,
        response=item.response,
        video_description=item.description,
        fence=fence_token(item.prompt, item.description, item.response),
    )
    return ChatRequest(
        [{"role": "user", "content": prompt}],
        SamplingParams(max_tokens=8 if choice else judge.max_tokens, temperature=0.0),
        StructuredOutput(choice=HELPFULNESS_CHOICES, name="helpfulness") if choice else None,
        id=f"{item.id}:helpfulness",
    )


def helpfulness_verdict(result: ChatResult, *, choice: bool) -> tuple[HelpfulnessVerdict, str | None]:
    """The verdict and raw text of a backend's answer to `helpfulness_request`; a failure is a judge error."""
    if not result.ok:
        raw = result.choices[0].text if result.choices else None
        return HelpfulnessVerdict(None, "judge_error", str(result.error), "none"), raw
    if choice:
        return HelpfulnessVerdict(int(result.parsed), "ok", "constrained choice", "choice"), result.text
    return parse_helpfulness(result.text), result.text
