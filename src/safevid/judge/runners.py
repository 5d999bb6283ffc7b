"""Every way of supplying a judge, behind one interface: a backend, a callable, or stored outputs.

[`resolve_judge`] turns a judge specification into a runner with ``risk(items, tokens)`` and
``helpfulness(items, tokens)`` (verdict and raw text per item, in order) and ``describe()`` (provenance):

- a `safevid.judge.Judge`, a `safevid.backends.Backend`, a `BackendConfig` or a mapping of its fields
  (``{"kind": "openai", "model": ..., "base_url": ...}``): the rubric judge over that backend, risk by
  choice-constrained decoding with top log-probabilities (expected score) by default;
- a callable ``fn(prompts: list[str]) -> list[str]``: it receives the rendered free-text prompts (risk
  prompts end with ``RISK_SCORE: <1-5>``, helpfulness prompts with ``HELPFULNESS_SCORE: <1-10>``) and
  returns the judge's raw texts, which are parsed like any judge output;
- precomputed raw outputs (``judge_outputs=``, ``helpfulness_outputs=``), e.g. from an earlier run.

Whatever goes wrong with the judge — an exception, an error response, a text without a usable score, a
wrong number of outputs — the item gets an ``undetermined`` verdict with its reason, never ``safe``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from safevid.backends import Backend, BackendConfig, make_backend
from safevid.judge.helpfulness import helpfulness_request, helpfulness_verdict
from safevid.judge.items import JudgeItem, validate_threshold
from safevid.judge.risk import Judge
from safevid.prompts import judge_helpfulness_prompt
from safevid.scoring import HelpfulnessVerdict, Verdict, judge_verdict, parse_helpfulness
from safevid.taxonomy import Taxonomy

__all__ = ["BackendRunner", "CallableRunner", "JudgeTokens", "PrecomputedRunner", "resolve_judge"]


@dataclass
class JudgeTokens:
    """Judge requests and tokens, summed over every call of a scorer."""

    requests: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed_s: float = 0.0

    def add_summary(self, summary: Any) -> None:
        self.requests += summary.total
        self.failed_requests += summary.failed
        self.prompt_tokens += summary.prompt_tokens
        self.completion_tokens += summary.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "elapsed_s": round(self.elapsed_s, 3)}


class BackendRunner:
    """The rubric `Judge` over a backend; helpfulness by the same backend and style."""

    def __init__(self, judge: Any) -> None:
        self.judge = judge
        self.threshold = judge.threshold

    def describe(self) -> dict[str, Any]:
        config = getattr(self.judge.backend, "config", None)
        return {
            "kind": getattr(self.judge.backend, "kind", type(self.judge.backend).__name__),
            "model": getattr(config, "model", None),
            "revision": getattr(config, "revision", None),
            "style": self.judge.style,
            "threshold": self.threshold,
            "min_mass": self.judge.min_mass,
            "prompt_sha": self.judge.prompt_sha,
        }

    def risk(
        self,
        items: list[JudgeItem],
        tokens: JudgeTokens,
        *,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[tuple[Verdict, str | None]]:
        requests = [self.judge.request(item) for item in items]
        if temperature > 0:  # the self-consistency pass: sampled, so not a cache hit of the first pass
            for i, request in enumerate(requests):
                request.sampling = dataclasses.replace(
                    request.sampling, temperature=temperature, seed=None if seed is None else seed + i
                )
        batch = self.judge.backend.generate(requests, progress=False)
        tokens.add_summary(batch.summary)
        # `Judge.verdict` is the judge's own result → verdict conversion (errors and parse failures become
        # undetermined verdicts with their reason); reusing it keeps the metric and the build gate identical.
        results = [self.judge.verdict(item, result) for item, result in zip(items, batch, strict=True)]
        return [(r.verdict, r.raw_text) for r in results]

    def helpfulness(
        self, items: list[JudgeItem], tokens: JudgeTokens
    ) -> list[tuple[HelpfulnessVerdict, str | None]]:
        batch = self.judge.backend.generate(
            [helpfulness_request(self.judge, item) for item in items], progress=False
        )
        tokens.add_summary(batch.summary)
        return [helpfulness_verdict(result, choice=self.judge.style == "choice") for result in batch]


class CallableRunner:
    """A user function ``fn(prompts) -> texts`` over the free-text prompts."""

    def __init__(
        self, fn: Callable[[list[str]], Sequence[Any]], taxonomy: Taxonomy, threshold: float
    ) -> None:
        self.fn = fn
        self.threshold = threshold
        # A Judge without a backend renders the prompts: the same templates, rules and fences.
        self.judge = Judge(None, taxonomy, threshold, style="text")

    def describe(self) -> dict[str, Any]:
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return {
            "kind": "callable",
            "model": name,
            "style": "text",
            "threshold": self.threshold,
            "prompt_sha": self.judge.prompt_sha,
        }

    def _call(self, prompts: list[str], tokens: JudgeTokens) -> tuple[list[Any], str | None]:
        tokens.requests += len(prompts)
        try:
            texts = list(self.fn(prompts))
        except Exception as e:  # the judge is an external boundary: its failure is recorded, not raised
            tokens.failed_requests += len(prompts)
            return [None] * len(prompts), f"the judge raised {type(e).__name__}: {e}"
        if len(texts) != len(prompts):
            tokens.failed_requests += len(prompts)
            return [None] * len(
                prompts
            ), f"the judge returned {len(texts)} outputs for {len(prompts)} prompts"
        return texts, None

    def risk(
        self,
        items: list[JudgeItem],
        tokens: JudgeTokens,
        *,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[tuple[Verdict, str | None]]:
        texts, error = self._call([self.judge.prompt(item) for item in items], tokens)
        if error is not None:
            return [(Verdict.judge_error(error, self.threshold), None) for _ in texts]
        return [_text_verdict(text, "the judge", self.threshold) for text in texts]

    def helpfulness(
        self, items: list[JudgeItem], tokens: JudgeTokens
    ) -> list[tuple[HelpfulnessVerdict, str | None]]:
        prompts = [
            judge_helpfulness_prompt(query=i.prompt, response=i.response, video_description=i.description)
            for i in items
        ]
        texts, error = self._call(prompts, tokens)
        return [
            (HelpfulnessVerdict(None, "judge_error", error, "none"), None)
            if error is not None or not isinstance(text, str)
            else (parse_helpfulness(text), text)
            for text in texts
        ]


class PrecomputedRunner:
    """Raw judge outputs given up front, one per item, in item order."""

    def __init__(
        self, outputs: Sequence[Any], helpfulness_outputs: Sequence[Any] | None, threshold: float
    ) -> None:
        self.outputs = list(outputs)
        self.helpfulness_outputs = None if helpfulness_outputs is None else list(helpfulness_outputs)
        self.threshold = threshold
        self._index: dict[str, int] = {}

    def bind(self, items: Sequence[JudgeItem]) -> None:
        if len(self.outputs) != len(items):
            raise ValueError(f"judge_outputs has {len(self.outputs)} entries for {len(items)} predictions")
        if self.helpfulness_outputs is not None and len(self.helpfulness_outputs) != len(items):
            raise ValueError(
                f"helpfulness_outputs has {len(self.helpfulness_outputs)} entries for {len(items)} predictions"
            )
        self._index = {item.id: i for i, item in enumerate(items)}

    def describe(self) -> dict[str, Any]:
        return {"kind": "precomputed", "model": None, "style": "text", "threshold": self.threshold}

    def risk(self, items: list[JudgeItem], tokens: JudgeTokens, **_: Any) -> list[tuple[Verdict, str | None]]:
        return [
            _text_verdict(
                self.outputs[self._index[item.id]], f"judge_outputs[{self._index[item.id]}]", self.threshold
            )
            for item in items
        ]

    def helpfulness(
        self, items: list[JudgeItem], tokens: JudgeTokens
    ) -> list[tuple[HelpfulnessVerdict, str | None]]:
        assert self.helpfulness_outputs is not None
        return [
            (parse_helpfulness(t if isinstance(t, str) else None), t)
            for t in (self.helpfulness_outputs[self._index[item.id]] for item in items)
        ]


def resolve_judge(
    judge: Any,
    *,
    taxonomy: Taxonomy,
    threshold: float | None = None,
    style: str = "choice",
    judge_outputs: Sequence[Any] | None = None,
    helpfulness_outputs: Sequence[Any] | None = None,
) -> Any:
    """The judge runner for any accepted judge specification (see the module docstring).

    Raises:
        ValueError: no judge and no precomputed outputs, both, or an unusable specification.
    """
    if judge is not None and judge_outputs is not None:
        raise ValueError("Give either `judge` or `judge_outputs`, not both")
    if judge is None:
        if judge_outputs is None:
            raise ValueError(
                "A judge is required: pass judge= (a backend config dict, a BackendConfig, a Backend, a "
                "safevid.judge.Judge or a callable prompts -> texts) or judge_outputs= (raw judge texts)"
            )
        return PrecomputedRunner(judge_outputs, helpfulness_outputs, validate_threshold(threshold))
    if helpfulness_outputs is not None:
        raise ValueError("helpfulness_outputs= goes with judge_outputs=, not with a live judge")
    if isinstance(judge, Judge):
        if threshold is not None and not math.isclose(threshold, judge.threshold):
            raise ValueError(
                f"threshold={threshold} contradicts the given Judge's threshold {judge.threshold}"
            )
        return BackendRunner(judge)
    if isinstance(judge, (Mapping, BackendConfig)):
        judge = make_backend(dict(judge) if isinstance(judge, Mapping) else judge)
    if isinstance(judge, Backend):
        return BackendRunner(Judge(judge, taxonomy, validate_threshold(threshold), style=style))  # type: ignore[arg-type]
    if callable(judge):
        return CallableRunner(judge, taxonomy, validate_threshold(threshold))
    raise ValueError(
        f"Unusable judge {type(judge).__name__}: expected a backend config dict, a BackendConfig, a Backend, "
        "a safevid.judge.Judge or a callable prompts -> texts"
    )


def _text_verdict(
    text: Any, source: str, threshold: float, *, missing_ok: bool = False
) -> tuple[Verdict, str | None]:
    """The verdict of one raw judge output: anything but text is a judge error (`None` too, unless `missing_ok`:
    a precomputed output left out is parsed as an empty answer)."""
    if not isinstance(text, str) and not (missing_ok and text is None):
        return Verdict.judge_error(f"{source} returned {type(text).__name__}, not text", threshold), None
    return judge_verdict(text, threshold=threshold), text
