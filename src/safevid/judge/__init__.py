"""The one home of judging: risk and helpfulness requests and verdicts, the judged items, every way of
supplying a judge.

- `JudgeItem` (`safevid.judge.items`): one response to a query about a video, with its subcategory and
  query style; `validate_threshold` checks a risk threshold against the 1–5 scale.
- `Judge` (`safevid.judge.risk`): the risk judge over any backend, three-way verdicts (safe / unsafe /
  undetermined). The build pipeline's quality gate and SafeVidBench's scorer both use it, so nothing in
  it knows about either.
- `safevid.judge.helpfulness`: the helpfulness (1–10) request and verdict, riding on a `Judge`.
- `resolve_judge` (`safevid.judge.runners`): a `Judge`, a backend, a backend config, a callable
  ``prompts -> texts`` or stored raw outputs, behind one runner interface.
"""

from safevid.judge.helpfulness import HELPFULNESS_CHOICES, helpfulness_request, helpfulness_verdict
from safevid.judge.items import JudgeItem, validate_threshold
from safevid.judge.risk import RISK_CHOICES, Judge, JudgeResult
from safevid.judge.runners import JudgeTokens, resolve_judge

__all__ = [
    "HELPFULNESS_CHOICES",
    "RISK_CHOICES",
    "Judge",
    "JudgeItem",
    "JudgeResult",
    "JudgeTokens",
    "helpfulness_request",
    "helpfulness_verdict",
    "resolve_judge",
    "validate_threshold",
]
