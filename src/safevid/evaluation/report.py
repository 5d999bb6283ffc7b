"""Reports of SafeVidBench runs: a Markdown table, PNG plots, and the model-card results block.

`write_report(run_dir, baseline=None)` reads ``metrics.json`` of a run (and of a baseline run, e.g. the base
model before DPO) and writes into the run folder:

- ``report.md``: overall metrics with the counts behind them, per-domain and per-style tables, judge statistics
  (and base-vs-aligned columns with deltas when a baseline is given);
- ``plots/domains.png``: harmlessness and attack success rate per domain;
- ``plots/styles.png``: harmlessness per query style, over-refusal on benign contrast;
- ``plots/comparison.png`` (with a baseline): harmlessness per domain, baseline and run side by side;
- ``model_index.yaml``: the ``model-index`` block for the model card (`safevid.evaluation.results`).

Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["markdown_report", "plot_comparison", "plot_domains", "plot_styles", "write_report"]

_OVERALL = (
    ("harmlessness_rate", "Harmlessness", "n_safe", "n_harmful"),
    ("attack_success_rate", "Attack success", "n_unsafe", "n_harmful"),
    ("undetermined_rate", "Undetermined", "n_undetermined", "n_harmful"),
    ("refusal_rate", "Refusal (harmful)", "n_refused_harmful", "n_harmful"),
    ("over_refusal_rate", "Over-refusal (benign contrast)", "n_refused_benign", "n_benign"),
    ("benign_unsafe_rate", "Unsafe on benign contrast", "n_unsafe_benign", "n_benign"),
)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _delta(new: float | None, old: float | None) -> str:
    return "–" if new is None or old is None else f"{100 * (new - old):+.1f} pt"


def ablation_sentence(run: dict[str, Any]) -> str:
    """What a run with a ``video_ablation`` answered from, in words: a control, not the model's own results.

    One line of inline Markdown whatever ``run`` holds (it is written into model cards too).
    """
    from safevid.backends.prepared import VIDEO_ABLATIONS
    from safevid.markdown import inline_code, inline_text

    ablation = run["video_ablation"]
    seed = f", seed {inline_text(run['video_ablation_seed'])}" if "video_ablation_seed" in run else ""
    frames = VIDEO_ABLATIONS.get(ablation, "changed frames")
    return (
        f"**Video ablation {inline_code(ablation)}{seed}**: every item was answered from {frames}, "
        "with the timestamps of the sampling; a control, not the model's results on the real videos."
    )


def markdown_report(
    metrics: dict[str, Any],
    *,
    name: str,
    baseline: dict[str, Any] | None = None,
    baseline_name: str = "baseline",
) -> str:
    """The Markdown report of a run (with baseline columns and deltas if given)."""
    counts = metrics["counts"]
    lines = [f"# SafeVidBench: {name}", ""]
    run = metrics.get("run", {})
    if run:
        lines += [
            f"Benchmark `{run.get('benchmark')}` ({run.get('split')}): {run.get('n_judged')} items judged, "
            f"{run.get('n_generation_failures', 0)} generation failure(s).",
            "",
        ]
        if run.get("video_ablation"):
            lines += [f"{ablation_sentence(run)}", ""]
    head = f"| metric | {name} | count |" + (f" {baseline_name} | Δ |" if baseline else "")
    lines += [head, "|---|---|---|" + ("---|---|" if baseline else "")]
    for key, label, num, den in _OVERALL:
        row = f"| {label} | {_pct(metrics[key])} | {counts[num]}/{counts[den]} |"
        if baseline:
            row += f" {_pct(baseline[key])} | {_delta(metrics[key], baseline[key])} |"
        lines.append(row)
    for key, label, scored in (
        ("mean_risk", "Mean risk (1–5)", "n_risk_scored"),
        ("mean_helpfulness", "Mean helpfulness (1–10)", "n_helpfulness_scored"),
    ):
        row = f"| {label} | {_num(metrics[key])} | {counts[scored]} scored |"
        if baseline:
            row += f" {_num(baseline[key])} | – |"
        lines.append(row)
    for group, title in (("by_domain", "domain"), ("by_style", "query style")):
        lines += [
            "",
            f"## Per {title}",
            "",
            f"| {title} | items | harmlessness | attack success | undetermined | refusal | over-refusal | mean risk |"
            + (f" harmlessness ({baseline_name}) |" if baseline else ""),
            "|---|---|---|---|---|---|---|---|" + ("---|" if baseline else ""),
        ]
        for key, m in metrics[group].items():
            row = (
                f"| {key} | {m['n_items']} | {_pct(m['harmlessness_rate'])} | {_pct(m['attack_success_rate'])} | "
                f"{_pct(m['undetermined_rate'])} | {_pct(m['refusal_rate'])} | {_pct(m['over_refusal_rate'])} | "
                f"{_num(m['mean_risk'])} |"
            )
            if baseline:
                row += f" {_pct(baseline[group].get(key, {}).get('harmlessness_rate'))} |"
            lines.append(row)
    judge = metrics["judge"]
    lines += [
        "",
        "## Judge",
        "",
        f"Judge `{judge.get('model')}` ({judge.get('kind')}, style {judge.get('style')}), threshold "
        f"{judge.get('threshold')}. Undetermined: {judge['n_undetermined']} (parse failures "
        f"{judge['n_parse_failures']}, judge refusals {judge['n_judge_refusals']}, errors {judge['n_judge_errors']}"
        f"); by code: {json.dumps(judge['undetermined_by_code'])}. Helpfulness missing: {judge['n_helpfulness_missing']}.",
        f"Refusal cross-check: {judge['refusal_crosscheck']['full_refusal_judged_unsafe']} full refusal(s) judged unsafe.",
    ]
    unjudged = metrics.get("run", {}).get("n_judge_failures", 0)
    if unjudged:
        lines.append(
            f"**{unjudged} answer(s) not judged**: the judge could not be reached or failed on them "
            "(`judge_failures.jsonl`); they are left out of every rate above, and a rerun judges them."
        )
    if judge.get("tokens"):
        t = judge["tokens"]
        lines.append(
            f"Judge calls this session: {t['requests']} ({t['failed_requests']} failed), "
            f"{t['prompt_tokens']} prompt + {t['completion_tokens']} completion tokens, {t['elapsed_s']} s."
        )
    if "calibration" in metrics:
        c = metrics["calibration"]
        lines += [
            "",
            "## Calibration against human labels",
            "",
            f"{c['n_labelled']} labelled, {c['n_compared']} compared: accuracy {_num(c['accuracy'], 3)}, "
            f"Cohen's κ {_num(c['kappa'], 3)} at threshold {c['threshold']}; suggested threshold "
            f"{c.get('suggested_threshold')} (accuracy {_num(c.get('accuracy_at_suggested'), 3)}).",
        ]
    if "self_consistency" in metrics:
        s = metrics["self_consistency"]
        lines += [
            "",
            "## Self-consistency",
            "",
            f"Judged twice: {s['disagreements']}/{s['n']} disagreements ({_pct(s['disagreement_rate'])}), "
            f"κ {_num(s['kappa'], 3)}, mean |Δrisk| {_num(s['mean_abs_score_diff'], 3)}.",
        ]
    lines += [
        "",
        "Plots: `plots/domains.png`, `plots/styles.png`"
        + (", `plots/comparison.png`" if baseline else "")
        + ". Model-card block: `model_index.yaml`.",
        "",
    ]
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    return plt


def _bars(ax: Any, labels: list[str], series: list[tuple[str, list[float | None]]]) -> None:
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, [100 * (v or 0.0) for v in values], width, label=name)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("%")
    ax.legend(fontsize=8)


def plot_domains(metrics: dict[str, Any], path: Path, *, name: str) -> Path:
    """Harmlessness and attack success rate per domain."""
    plt = _pyplot()
    domains = list(metrics["by_domain"])
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(domains) + 2), 4))
    _bars(
        ax,
        domains,
        [
            ("harmlessness", [metrics["by_domain"][d]["harmlessness_rate"] for d in domains]),
            ("attack success", [metrics["by_domain"][d]["attack_success_rate"] for d in domains]),
        ],
    )
    ax.set_title(f"SafeVidBench per domain: {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_styles(metrics: dict[str, Any], path: Path, *, name: str) -> Path:
    """Harmlessness per harmful query style, and over-refusal on benign contrast."""
    plt = _pyplot()
    styles = list(metrics["by_style"])
    values = [
        metrics["by_style"][s]["over_refusal_rate"]
        if metrics["by_style"][s]["n_harmful"] == 0
        else metrics["by_style"][s]["harmlessness_rate"]
        for s in styles
    ]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(styles) + 2), 4))
    _bars(ax, styles, [("harmlessness (over-refusal for benign contrast)", values)])
    ax.set_title(f"SafeVidBench per query style: {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_comparison(
    metrics: dict[str, Any], baseline: dict[str, Any], path: Path, *, name: str, baseline_name: str
) -> Path:
    """Harmlessness per domain (and overall), baseline and run side by side."""
    plt = _pyplot()
    domains = sorted(set(metrics["by_domain"]) | set(baseline["by_domain"]))
    labels = ["overall", *domains]

    def rates(m: dict[str, Any]) -> list[float | None]:
        return [
            m["harmlessness_rate"],
            *[m["by_domain"].get(d, {}).get("harmlessness_rate") for d in domains],
        ]

    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(labels) + 2), 4))
    _bars(ax, labels, [(baseline_name, rates(baseline)), (name, rates(metrics))])
    ax.set_title("SafeVidBench harmlessness: side by side")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _name(run: Path, metrics: dict[str, Any]) -> str:
    return metrics.get("run", {}).get("model") or run.name


def write_report(
    run_dir: str | Path, *, baseline: str | Path | None = None, dataset_id: str | None = None
) -> list[Path]:
    """Write ``report.md``, ``plots/*.png`` and ``model_index.yaml`` into a run folder; returns the files."""
    from safevid.evaluation.results import model_index_yaml

    run = Path(run_dir)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    name = _name(run, metrics)
    base = base_name = None
    if baseline is not None:
        base_path = Path(baseline) / "metrics.json"
        if not base_path.exists():
            raise FileNotFoundError(f"Baseline run {baseline} has no metrics.json: score it first")
        base = json.loads(base_path.read_text(encoding="utf-8"))
        base_name = _name(Path(baseline), base)
        if base_name == name:
            base_name = f"{base_name} ({Path(baseline).name})"
    plots = run / "plots"
    plots.mkdir(exist_ok=True)
    files = [
        plot_domains(metrics, plots / "domains.png", name=name),
        plot_styles(metrics, plots / "styles.png", name=name),
    ]
    if base is not None:
        files.append(
            plot_comparison(metrics, base, plots / "comparison.png", name=name, baseline_name=str(base_name))
        )
    report = run / "report.md"
    report.write_text(
        markdown_report(metrics, name=name, baseline=base, baseline_name=str(base_name or "")),
        encoding="utf-8",
    )
    dataset = dataset_id or metrics.get("run", {}).get("benchmark") or "safevidbench"
    index = run / "model_index.yaml"
    index.write_text(
        model_index_yaml(
            metrics, model_name=name, dataset_id=dataset, split=metrics.get("run", {}).get("split", "test")
        ),
        encoding="utf-8",
    )
    return [report, *files, index]
