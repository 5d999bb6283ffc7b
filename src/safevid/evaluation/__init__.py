"""SafeVidBench: build the benchmark, answer it with any video LMM, judge the answers, report.

- `safevid.evaluation.scorer`: the judge over responses (metric module and harness share it).
- `safevid.evaluation.benchmark`: the SafeVidBench builder (reuses the build pipeline's stages).
- `safevid.evaluation.harness`: generate → judge → score, resumable per-sample JSON Lines.
- `safevid.evaluation.report`: Markdown table and PNG plots; `safevid.evaluation.results`: model-card
  ``model-index`` results.
"""

from safevid.evaluation.scorer import ResponseItem, ScoredItem, Scorer, score_responses

__all__ = ["ResponseItem", "ScoredItem", "Scorer", "score_responses"]
