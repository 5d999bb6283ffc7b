"""Write a SafeVidBench run's results into a model's card, where the Hub shows them.

The card is a local model folder's ``README.md`` or a Hub model repo's; both go through
`huggingface_hub.ModelCard`, so the YAML metadata and the body round-trip as the Hub reads them. Two parts
change and nothing else:

- the ``model-index`` metadata: this run's `huggingface_hub.EvalResult` entries (`eval_results`) replace the
  entries equal to them but for the value (same task, dataset, split, metric), and every other entry stays;
- the results section: the block between ``RESULTS_BEGIN`` and ``RESULTS_END`` (the placeholder that
  `safevid.training.model_card` writes) is replaced by this run's table, or a ``## Results`` section with
  the block is appended to a card that has none.

So a rerun updates the card instead of appending to it. A card is someone's document, so the merge is careful
with it: a marker counts only as a whole line outside fenced code blocks (a card quoting the markers in an example
keeps its example); a begin marker without its end marker is replaced by the block and the text after it kept;
every value written (a judge's or a benchmark's name) is one line of inline text, so no name can end the block or
open a section; a card whose YAML front matter does not parse is a `ValueError` naming the card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safevid.evaluation.report import ablation_sentence
from safevid.evaluation.results import benchmark_name, eval_results
from safevid.markdown import RESULTS_BEGIN, RESULTS_END, inline_code, inline_text, table_cell

__all__ = ["results_block", "update_card", "write_results_to_card"]


def write_results_to_card(
    run_dir: str | Path, target: str | Path, *, commit_message: str | None = None
) -> str:
    """Put the results of the scored run in ``run_dir`` into the card of ``target``.

    Args:
        run_dir (`str` or `Path`): a `safevid eval` output folder holding ``metrics.json``.
        target (`str` or `Path`): a local model folder (its ``README.md``; created if absent) or a Hub model
            repo id (pushed as one commit; the token comes from the usual `huggingface_hub` login).
        commit_message (`str`, *optional*): the Hub commit message.

    Returns:
        The card's location: the ``README.md`` path, or the Hub repo id.
    """
    from huggingface_hub.errors import EntryNotFoundError

    metrics_file = Path(run_dir) / "metrics.json"
    if not metrics_file.exists():
        raise FileNotFoundError(f"{metrics_file} not found: score the run first (safevid eval with a judge)")
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    run = metrics.get("run", {})
    name = run.get("model") or Path(run_dir).name
    local = Path(target)
    if local.is_dir():
        readme = local / "README.md"
        card = _load(readme, str(readme)) if readme.exists() else _new_card(name)
        update_card(card, metrics, model_name=name)
        card.save(readme)
        return str(readme)
    try:
        card = _load(str(target), f"the card of the Hub model {target}")
    except EntryNotFoundError:
        card = _new_card(name)
    update_card(card, metrics, model_name=name)
    card.push_to_hub(
        str(target),
        repo_type="model",
        commit_message=commit_message or f"{benchmark_name(metrics)} results of {name}",
    )
    return str(target)


def update_card(card: Any, metrics: dict[str, Any], *, model_name: str) -> None:
    """Merge ``metrics`` into ``card`` (a `huggingface_hub.ModelCard`) in place: see the module docstring."""
    run = metrics.get("run", {})
    dataset = run.get("benchmark") or "safevidbench"
    new = eval_results(metrics, model_name=model_name, dataset_id=dataset, split=run.get("split", "test"))
    kept = [old for old in card.data.eval_results or [] if not any(old.is_equal_except_value(n) for n in new)]
    card.data.eval_results = kept + new
    card.data.model_name = card.data.model_name or model_name
    card.text = _with_block(card.text, results_block(metrics, new))


def _load(source: str | Path, what: str) -> Any:
    """A `ModelCard` from a file or a Hub repo; front matter that does not parse is a `ValueError` naming it."""
    import yaml
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(source, repo_type="model")
    except (yaml.YAMLError, ValueError) as e:
        detail = " ".join(str(e).split())
        raise ValueError(
            f"{what}: its YAML front matter (between the '---' lines at the top) does not parse ({detail:.300}); "
            "fix or remove it, then write the results again"
        ) from None


def _with_block(text: str, block: str) -> str:
    """``text`` with its results block replaced by ``block`` (see the module docstring), or ``block`` appended."""
    lines = text.split("\n")
    begin = end = None
    for i, marker in _marker_lines(lines):
        if begin is None and marker == RESULTS_BEGIN:
            begin = i
        elif begin is not None and marker == RESULTS_END:
            end = i
            break
    if begin is None:
        return text.rstrip("\n") + f"\n\n## Results\n\n{block}\n"
    # A stray begin marker (no end after it) is replaced alone: the text after it is the author's.
    return "\n".join([*lines[:begin], block, *lines[(end if end is not None else begin) + 1 :]])


def _marker_lines(lines: list[str]) -> list[tuple[int, str]]:
    """The lines that are a results marker, whole, outside fenced code blocks."""
    found, fence = [], None
    for i, line in enumerate(lines):
        stripped = line.strip()
        opener = stripped[:3]
        if fence is None and opener in ("```", "~~~") and len(line) - len(line.lstrip()) < 4:
            fence = opener
        elif fence is not None and stripped.startswith(fence) and not stripped.strip(fence[0]):
            fence = None
        elif fence is None and stripped in (RESULTS_BEGIN, RESULTS_END):
            found.append((i, stripped))
    return found


def results_block(metrics: dict[str, Any], results: list[Any]) -> str:
    """The marked results section: what was evaluated, by which judge, and one row per reported metric."""
    run, judge, counts = metrics.get("run", {}), metrics.get("judge", {}), metrics.get("counts", {})
    judged_by = inline_code(judge.get("model") or judge.get("kind") or "an LLM judge")
    rows = "\n".join(f"| {table_cell(r.metric_name)} | {table_cell(r.metric_value)} |" for r in results)
    items = f", {inline_text(run['n_judged'])} items" if run.get("n_judged") is not None else ""
    count_text = ", ".join(f"{inline_text(k)}: {inline_text(v)}" for k, v in counts.items()) if counts else ""
    benchmark, split = (
        inline_code(run.get("benchmark") or "safevidbench"),
        inline_code(run.get("split", "test")),
    )
    return "\n".join(
        [
            RESULTS_BEGIN,
            f"{inline_text(benchmark_name(metrics))} ({benchmark}, split {split}{items}), judged by {judged_by} "
            f"with risk threshold {inline_text(judge.get('threshold'))}{_protocol(judge)}.",
            "",
            *([ablation_sentence(run), ""] if run.get("video_ablation") else []),
            "| metric | value |",
            "|---|---|",
            rows,
            "",
            *([f"Verdicts: {count_text}.", ""] if count_text else []),
            "_Written by `safevid eval`; the same numbers are in this card's `model-index` metadata._",
            RESULTS_END,
        ]
    )


def _protocol(judge: dict[str, Any]) -> str:
    if judge.get("protocol") != "video-safetybench":
        return ""
    return f" under Video-SafetyBench's RJScore protocol ({inline_text(judge.get('distribution'))})"


def _new_card(model_name: str) -> Any:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(tags=["safevid", "video", "safety"])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n# {model_name}\n")
