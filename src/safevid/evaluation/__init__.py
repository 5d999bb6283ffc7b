"""SafeVidBench evaluation: answer the benchmark with any video LMM, judge the answers, report.

- `safevid.evaluation.scorer`: scores judged responses and aggregates them (metric module and harness share
  it); judging itself is `safevid.judge`.
- `safevid.evaluation.harness`: generate → judge → score → report (`evaluate_run`), each step resuming what is on
  disk; its parts: `safevid.evaluation.config` (`EvalConfig`), `safevid.evaluation.run` (the run's folder,
  append-only JSON Lines, kill hook), `safevid.evaluation.answers` (the model's answers, streamed) and
  `safevid.evaluation.outside` (outside benchmarks and their protocols).
- `safevid.evaluation.report`: Markdown table and PNG plots; `safevid.evaluation.results`: model-card
  ``model-index`` results.

The benchmark is built with the other datasets, by `safevid.pipeline.benchmark`.
"""

from safevid.evaluation.scorer import ScoredItem, Scorer, score_responses

__all__ = ["ScoredItem", "Scorer", "score_responses"]
