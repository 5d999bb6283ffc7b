"""An evaluation run's folder: its files, append-only JSON Lines, the run's identity and its kill hook.

A run is a folder::

    <output_dir>/run.json              what the run is: benchmark, model, generation, video sampling, judge
    <output_dir>/answers.jsonl         one line per item: the answer, with model, sampling and usage
    <output_dir>/judgements.jsonl      one line per item: verdict, refusal, helpfulness, raw outputs, judge
    <output_dir>/generation_failures.jsonl   items whose generation failed this time (retried by a rerun)
    <output_dir>/judge_failures.jsonl        answers the judge could not judge this time (unreachable, erroring):
                                             no verdict is written for them, a rerun judges them
    <output_dir>/metrics.json          `safevid.evaluation.scorer.summarize` of the judgements
    <output_dir>/report.md, plots/*.png, model_index.yaml   (`safevid.evaluation.report`)

**Resume.** Both JSONL files are append-only, one batch per write followed by ``fsync``; a rerun reads the ids
already there and does only the rest, so a run killed at any point continues where it stopped without
duplicates. A torn last line (a kill in the middle of a write) is cut off before appending. A rerun under a
different model, generation or judge configuration is refused (``run.json``), never mixed. Every committed batch is
a checkpoint (`safevid.backends.scheduler.Checkpoints` under ``SAFEVID_EVAL``: ``SAFEVID_EVAL_KILL_AT=<n>`` kills
the process at its n-th), so resume is tested by killing the process for real.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safevid.backends.scheduler import Checkpoints

if TYPE_CHECKING:
    from safevid.evaluation.config import EvalConfig

logger = logging.getLogger(__name__)

__all__ = [
    "ANSWERS",
    "FAILURES",
    "JUDGEMENTS",
    "JUDGE_FAILURES",
    "METRICS",
    "RUN",
    "JudgeUnavailableError",
    "RunChangedError",
    "append_jsonl",
    "check_run",
    "checkpoints",
    "read_jsonl",
    "write_failures",
]

ANSWERS, JUDGEMENTS, FAILURES, JUDGE_FAILURES, RUN, METRICS = (
    "answers.jsonl",
    "judgements.jsonl",
    "generation_failures.jsonl",
    "judge_failures.jsonl",
    "run.json",
    "metrics.json",
)


class RunChangedError(RuntimeError):
    """The output folder holds a run made with another model, generation or judge configuration."""


class JudgeUnavailableError(RuntimeError):
    """The judge could not judge any answer (unreachable, erroring): there is nothing to score yet."""


def checkpoints() -> Checkpoints:
    """The run's kill hook (``SAFEVID_EVAL_KILL_AT``, ``SAFEVID_EVAL_CHECKPOINT_LOG``)."""
    return Checkpoints("SAFEVID_EVAL")


def read_jsonl(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The complete lines of a JSONL file; with ``repair``, a torn last line (no newline) is cut off on disk."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        logger.warning(
            "%s: dropping a torn last line (%d bytes) from an interrupted write", path, len(data) - end
        )
        if repair:
            with path.open("r+b") as f:
                f.truncate(end)
    rows = []
    for number, line in enumerate(data[:end].splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{path}:{number}: not valid JSON ({e}); fix or delete the line") from None
    return rows


def append_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows in one write, then fsync: a kill leaves whole batches (and at most one torn line)."""
    if not rows:
        return
    payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    with path.open("a", encoding="utf-8") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def write_failures(path: Path, failures: list[dict[str, Any]], what: str) -> None:
    """Replace ``path`` with this pass's failures (``{"id", "error"}``), and warn when there are any."""
    path.unlink(missing_ok=True)
    append_jsonl(path, failures)
    if failures:
        logger.warning("%d item(s) %s (see %s); rerun to retry them", len(failures), what, path)


def check_run(config: EvalConfig, out: Path) -> None:
    """Write ``run.json``, or refuse if the folder holds another model's answers or another judge's verdicts."""
    path = out / RUN
    current = {
        "benchmark": {"path": config.benchmark, "config": config.benchmark_config, "split": config.split},
        "generation": config.generation_identity(),
        "judge": config.judge_identity(),
        "model_name": config.display_name,
    }
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        for key, what, file in (("generation", "model/generation", ANSWERS), ("judge", "judge", JUDGEMENTS)):
            if previous.get(key) != current[key] and (out / file).exists() and previous.get(key) is not None:
                raise RunChangedError(
                    f"{out} holds {file} made with another {what} configuration:\n  was {previous.get(key)}\n"
                    f"  now {current[key]}\nUse a new --output-dir (or delete {out / file} to redo it)."
                )
        if current["judge"] is None:
            current["judge"] = previous.get("judge")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
