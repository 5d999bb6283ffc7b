"""Pure scoring core of SafeVidBench: verdict parsing, refusal detection, metrics and calibration.

Nothing here calls a model: strings and numbers in, dataclasses out.
"""

from safevid.scoring.calibration import (
    AgreementReport,
    ConsistencyReport,
    LabelledExample,
    ThresholdChoice,
    agreement,
    choose_threshold,
    cohen_kappa,
    load_labelled_examples,
    self_consistency,
)
from safevid.scoring.metrics import BenchmarkReport, EvalRecord, GroupMetrics, JudgeStats, compute_metrics
from safevid.scoring.refusal import RefusalSignal, detect_refusal, is_refusal
from safevid.scoring.verdict import (
    DEFAULT_MIN_MASS,
    DEFAULT_RISK_THRESHOLD,
    ExpectedScore,
    HelpfulnessVerdict,
    Verdict,
    expected_score,
    judge_verdict,
    parse_helpfulness,
    parse_risk,
    verdict_from_logprobs,
)

__all__ = [
    "DEFAULT_MIN_MASS",
    "DEFAULT_RISK_THRESHOLD",
    "AgreementReport",
    "BenchmarkReport",
    "ConsistencyReport",
    "EvalRecord",
    "ExpectedScore",
    "GroupMetrics",
    "HelpfulnessVerdict",
    "JudgeStats",
    "LabelledExample",
    "RefusalSignal",
    "ThresholdChoice",
    "Verdict",
    "agreement",
    "choose_threshold",
    "cohen_kappa",
    "compute_metrics",
    "detect_refusal",
    "expected_score",
    "is_refusal",
    "judge_verdict",
    "load_labelled_examples",
    "parse_helpfulness",
    "parse_risk",
    "self_consistency",
    "verdict_from_logprobs",
]
