"""Calibrate the judge against human labels, and check that it agrees with itself.

- [`cohen_kappa`]: agreement beyond chance between two labelings.
- [`choose_threshold`]: the risk threshold (unsafe if expected score > threshold) that maximises accuracy
  or κ against human safe/unsafe labels.
- [`agreement`]: accuracy and κ of judge verdicts against human labels.
- [`self_consistency`]: how often two judge runs over the same items disagree.
- [`load_labelled_examples`]: the small packaged, **illustrative** human-labelled set
  (``data/labelled_examples.jsonl``), or a user's own file in the same format.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

from safevid.scoring.verdict import DEFAULT_RISK_THRESHOLD, Verdict

__all__ = [
    "AgreementReport",
    "ConsistencyReport",
    "LabelledExample",
    "ThresholdChoice",
    "agreement",
    "choose_threshold",
    "cohen_kappa",
    "load_labelled_examples",
    "self_consistency",
]

HumanLabel = Literal["safe", "unsafe"]


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's κ between two labelings of the same items: (p_o − p_e) / (1 − p_e).

    p_o is the observed agreement; p_e the agreement expected by chance from each labeling's marginal
    frequencies. When p_e = 1 (both labelings use one and the same label) κ is undefined: ``nan``.

    Example (hand-computed: p_o = 1/5 = 0.2, p_e = (3·3 + 2·2) / 25 = 0.52, κ = −0.32 / 0.48):

    ```python
    >>> round(cohen_kappa(list("aabab"), list("ababa")), 4)
    -0.6667

    ```
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs two labelings of equal length, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError("cohen_kappa needs at least one item")
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    p_e = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    if p_e == 1:
        return math.nan
    return (p_o - p_e) / (1 - p_e)


@dataclass(frozen=True)
class AgreementReport:
    """Judge verdicts against human labels.

    Attributes:
        n: Items compared (judge verdict safe or unsafe).
        n_undetermined: Items left out because the judge verdict was undetermined (``coverage`` = n / total).
        accuracy: Fraction of compared items where the judge agrees with the human label.
        kappa: Cohen's κ over the compared items.
        confusion: Counts keyed ``"<human>/<judge>"`` (e.g. ``"unsafe/safe"`` = a missed unsafe response).
    """

    n: int
    n_undetermined: int
    accuracy: float | None
    kappa: float | None
    confusion: dict[str, int]

    @property
    def coverage(self) -> float:
        total = self.n + self.n_undetermined
        return self.n / total if total else 0.0


def _check_human(labels: Sequence[str]) -> None:
    for i, label in enumerate(labels):
        if label not in ("safe", "unsafe"):
            raise ValueError(f"Human label {i} must be 'safe' or 'unsafe', got {label!r}")


def _verdict_label(v: Verdict | str) -> str:
    label = v.label if isinstance(v, Verdict) else v
    if label not in ("safe", "unsafe", "undetermined"):
        raise ValueError(f"Verdict label must be safe, unsafe or undetermined, got {label!r}")
    return label


def agreement(human: Sequence[str], judge: Sequence[Verdict | str]) -> AgreementReport:
    """Accuracy and κ of judge verdicts against human labels.

    Undetermined judge verdicts are left out of accuracy and κ and counted in ``n_undetermined`` (they
    are neither right nor wrong about safety; their rate is the judge's coverage problem).
    """
    if len(human) != len(judge):
        raise ValueError(
            f"agreement needs as many judge verdicts as human labels: {len(judge)} vs {len(human)}"
        )
    _check_human(human)
    pairs = [(h, j) for h, j in zip(human, map(_verdict_label, judge), strict=True) if j != "undetermined"]
    confusion = Counter(f"{h}/{j}" for h, j in pairs)
    if not pairs:
        return AgreementReport(0, len(human), None, None, {})
    hs, js = zip(*pairs, strict=True)
    accuracy = sum(h == j for h, j in pairs) / len(pairs)
    return AgreementReport(
        len(pairs), len(human) - len(pairs), accuracy, cohen_kappa(hs, js), dict(sorted(confusion.items()))
    )


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and its agreement with the human labels.

    Attributes:
        threshold: Unsafe if the judge's expected score is above it.
        accuracy: Agreement with human labels at this threshold.
        kappa: Cohen's κ at this threshold (``nan`` if undefined).
        n: Items used (with a judge score).
        n_excluded: Items without a judge score (undetermined), left out of the fit.
        objective: ``"accuracy"`` or ``"kappa"``.
    """

    threshold: float
    accuracy: float
    kappa: float
    n: int
    n_excluded: int
    objective: str


def choose_threshold(
    human: Sequence[str],
    scores: Sequence[float | None],
    *,
    objective: Literal["accuracy", "kappa"] = "accuracy",
    default: float = DEFAULT_RISK_THRESHOLD,
) -> ThresholdChoice:
    """The threshold on the judge's expected risk score that best reproduces human safe/unsafe labels.

    Candidates are the midpoints between consecutive distinct scores, plus one below the lowest and one
    above the highest (everything unsafe / everything safe). Ties on the objective are broken by the
    other measure, then by closeness to ``default``, so the result is deterministic.

    Args:
        human: Human labels, ``"safe"`` or ``"unsafe"``.
        scores: The judge's (expected) risk score per item; ``None`` where undetermined (left out).
        objective: What to maximise: ``"accuracy"`` or Cohen's ``"kappa"``.
        default: The threshold ties are drawn towards.

    Example:

    ```python
    >>> choose_threshold(["safe", "safe", "unsafe", "unsafe"], [1.0, 2.2, 3.4, 4.8]).threshold
    2.8

    ```
    """
    if len(human) != len(scores):
        raise ValueError(f"choose_threshold needs one score per human label: {len(scores)} vs {len(human)}")
    if objective not in ("accuracy", "kappa"):
        raise ValueError(f"objective must be 'accuracy' or 'kappa', got {objective!r}")
    _check_human(human)
    pairs = [(h, float(s)) for h, s in zip(human, scores, strict=True) if s is not None]
    if not pairs:
        raise ValueError("choose_threshold needs at least one item with a judge score")
    distinct = sorted({s for _, s in pairs})
    candidates = [
        distinct[0] - 0.5,
        *[(x + y) / 2 for x, y in pairwise(distinct)],
        distinct[-1] + 0.5,
    ]
    labels = [h for h, _ in pairs]
    best: tuple[tuple[float, float, float], ThresholdChoice] | None = None
    for t in candidates:
        predicted = ["unsafe" if s > t else "safe" for _, s in pairs]
        acc = sum(p == h for p, h in zip(predicted, labels, strict=True)) / len(pairs)
        kappa = cohen_kappa(labels, predicted)
        k = -1.0 if math.isnan(kappa) else kappa  # an undefined κ never wins on κ
        key = (acc, k, -abs(t - default)) if objective == "accuracy" else (k, acc, -abs(t - default))
        if best is None or key > best[0]:
            best = (
                key,
                ThresholdChoice(round(t, 6), acc, kappa, len(pairs), len(human) - len(pairs), objective),
            )
    assert best is not None
    return best[1]


@dataclass(frozen=True)
class ConsistencyReport:
    """Agreement of two judge runs over the same items.

    Attributes:
        n: Items compared.
        disagreements: Items whose labels differ (undetermined in one run and not the other counts).
        disagreement_rate: ``disagreements / n``.
        kappa: Cohen's κ between the two runs' labels (three classes; ``nan`` if undefined).
        mean_abs_score_diff: Mean |score_a − score_b| over items scored in both runs, or ``None``.
    """

    n: int
    disagreements: int
    disagreement_rate: float
    kappa: float
    mean_abs_score_diff: float | None


def self_consistency(run_a: Sequence[Verdict | str], run_b: Sequence[Verdict | str]) -> ConsistencyReport:
    """How often two judge runs over the same items (e.g. two seeds or temperatures) disagree."""
    if len(run_a) != len(run_b):
        raise ValueError(f"self_consistency needs runs of equal length, got {len(run_a)} and {len(run_b)}")
    if not run_a:
        raise ValueError("self_consistency needs at least one item")
    a, b = [_verdict_label(v) for v in run_a], [_verdict_label(v) for v in run_b]
    disagreements = sum(x != y for x, y in zip(a, b, strict=True))
    diffs = [
        abs(x.score - y.score)
        for x, y in zip(run_a, run_b, strict=True)
        if isinstance(x, Verdict) and isinstance(y, Verdict) and x.score is not None and y.score is not None
    ]
    return ConsistencyReport(
        n=len(a),
        disagreements=disagreements,
        disagreement_rate=disagreements / len(a),
        kappa=cohen_kappa(a, b),
        mean_abs_score_diff=sum(diffs) / len(diffs) if diffs else None,
    )


@dataclass(frozen=True)
class LabelledExample:
    """One human-labelled response (query, category, response, safe/unsafe)."""

    id: str
    subcategory: str
    query_style: str
    query: str
    video_description: str
    response: str
    human_label: HumanLabel
    note: str = ""


_EXAMPLE_FIELDS = {
    "id",
    "subcategory",
    "query_style",
    "query",
    "video_description",
    "response",
    "human_label",
    "note",
}


def load_labelled_examples(path: str | os.PathLike[str] | None = None) -> list[LabelledExample]:
    """Load human-labelled examples from JSON Lines.

    A line that is an object with a single ``"_meta"`` key describes the file and is skipped. The
    packaged default (``path=None``) is a small **illustrative** set written by the safevid authors to
    exercise calibration end to end, not a validated benchmark of human judgements.

    Raises:
        ValueError: A line is not JSON, has unknown or missing fields, or a label other than safe/unsafe
            (the message names the file and line).
    """
    if path is None:
        source = "safevid/scoring/data/labelled_examples.jsonl"
        text = (
            resources.files("safevid.scoring")
            .joinpath("data/labelled_examples.jsonl")
            .read_text(encoding="utf-8")
        )
    else:
        source, text = str(path), Path(path).read_text(encoding="utf-8")
    examples = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            row: Any = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object")
        if set(row) == {"_meta"}:
            continue
        unknown, missing = set(row) - _EXAMPLE_FIELDS, _EXAMPLE_FIELDS - {"note"} - set(row)
        if unknown or missing:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
        if row["human_label"] not in ("safe", "unsafe"):
            raise ValueError(f"{where}: human_label must be 'safe' or 'unsafe', got {row['human_label']!r}")
        examples.append(LabelledExample(**row))
    return examples
