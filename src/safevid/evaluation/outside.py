"""Outside benchmarks: Video-SafetyBench as published, or any benchmark brought by a column map.

`load_outside_benchmark` reads a benchmark from a local folder or a Hub dataset snapshot, one split, and
renames its columns to safevid's through a column map (`parse_column_map`). The defaults are
Video-SafetyBench's own columns (``question_id, question, harmful_intention, question_type, video_path,
category, subcategory``), so that benchmark needs no map; any other benchmark with a video column and a query
column is mapped onto the same fields, with a policies file naming its scenarios.

`evaluate_outside` is the run of ``safevid eval --protocol video-safetybench``: it answers every item with the
benchmark's model prompt through the same resumable generation as SafeVidBench (`harness.generate_answers`),
judges with Video-SafetyBench's RJScore protocol (`safevid.judge.protocols.video_safetybench`), and writes
``metrics.json`` and ``report.md``: attack success rate and mean risk overall and per scenario, with safevid's
refusal rate (`safevid.scoring.is_refusal`) beside them. Both Video-SafetyBench splits hold harmful-intent
items (``benign`` has benign-looking queries, not an over-refusal set), so no over-refusal rate is reported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safevid.evaluation import harness

logger = logging.getLogger(__name__)

__all__ = [
    "COLUMNS",
    "evaluate_outside",
    "load_outside_benchmark",
    "load_split",
    "parse_column_map",
    "scenario_of",
]

COLUMNS: dict[str, str | None] = {
    "id": "question_id",
    "prompt": "question",
    "video": "video_path",
    "harmful_intention": "harmful_intention",
    "scenario": None,  # None: the video path's folder, e.g. video/1_Violent_Crimes/x.mp4 → 1_Violent_Crimes
    "subcategory": "subcategory",
    "query_style": "question_type",
}
"""safevid's field → the benchmark's column (Video-SafetyBench's names by default)."""

_OPTIONAL = ("subcategory", "query_style")
ARCHIVE = "video.tar.gz"  # Video-SafetyBench's videos, as published


def parse_column_map(spec: str | dict[str, str] | None) -> dict[str, str]:
    """A column map from ``field=column,...``, a YAML/JSON file of ``{field: column}``, or a mapping.

    Fields are the keys of `COLUMNS`; the ones not given keep Video-SafetyBench's column names.

    Raises:
        ValueError: an unknown field, or an entry without ``=``.
    """
    if spec is None:
        return {}
    if isinstance(spec, str):
        if Path(spec).expanduser().is_file():
            from safevid.config import read_config_file

            spec = {str(k): str(v) for k, v in read_config_file(Path(spec).expanduser()).items()}
        else:
            pairs = [p.strip() for p in spec.split(",") if p.strip()]
            bad = [p for p in pairs if "=" not in p]
            if bad:
                raise ValueError(f"column map entries must be field=column, got {bad} in {spec!r}")
            spec = dict(tuple(s.strip() for s in p.split("=", 1)) for p in pairs)
    unknown = sorted(set(spec) - set(COLUMNS))
    if unknown:
        raise ValueError(f"column map: unknown field(s) {unknown}; fields are {list(COLUMNS)}")
    return dict(spec)


def scenario_of(video_path: str) -> str:
    """Video-SafetyBench's scenario of an item: the folder under ``video/`` (``1_Violent_Crimes``)."""
    parts = str(video_path).replace("\\", "/").split("/")
    if len(parts) < 3:
        raise ValueError(
            f"video path {video_path!r} has no scenario folder (video/<n>_<Scenario>/...); "
            "map a scenario column instead (--column-map scenario=<column>)"
        )
    return parts[1]


def _policy_key(scenario: str, mapped: bool) -> str:
    """The key of a scenario in the policies: ``1_Violent_Crimes`` → ``Violent_Crimes`` as the authors do."""
    return scenario if mapped else scenario.split("_", 1)[-1]


def _cell_path(cell: Any) -> str:
    return str(cell.get("path") if isinstance(cell, dict) else cell)


def outside_references(root: Path, allowed_local_media_path: Sequence[str] = ()) -> Any:
    """How an outside benchmark's video cells resolve: inside its folder, or inside its published archive
    (``video.tar.gz``, extracted once into safevid's cache) when the folder holds the archive only."""
    from safevid.video.references import VideoReferences

    archive = ARCHIVE if (root / ARCHIVE).is_file() and not (root / "video").is_dir() else None
    return VideoReferences(
        dataset_dir=str(root), archive=archive, allowed_local_media_path=tuple(allowed_local_media_path)
    )


def _benchmark_root(location: str) -> Path:
    """A local folder as is; a Hub dataset id through its snapshot (archives included)."""
    local = Path(location).expanduser()
    if local.exists():
        return local
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(location, repo_type="dataset"))


_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def load_split(root: Path, split: str) -> Any:
    """One split of a benchmark folder: as its card's ``configs`` declare it, else (a copy without the card, where
    `datasets` sees one ``train`` split) the data files named after it: ``harmful.parquet``,
    ``data/harmful-00000-of-00001.parquet``, ``benign.json``...

    Raises:
        ValueError: neither the card nor a file name gives the split; names the files looked for.
    """
    from datasets import load_dataset

    from safevid.datasets_io import load_split as load_declared

    try:
        return load_declared(root, split=split)
    except ValueError as e:
        if "split" not in str(e).lower():
            raise
        declared = str(e)
    named = [
        path
        for path in sorted(root.rglob("*"))
        if path.suffix in _BUILDERS
        and split in re.split(r"[^0-9A-Za-z]+", path.stem)
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    if not named:
        raise ValueError(
            f"{root} has no split {split!r}: its card declares none ({declared}) and no data file is named after "
            f"it ({split}.parquet, {split}.json, data/{split}-*.parquet...). Name the file after the split or add the "
            "card's `configs`"
        )
    kind = next(suffix for suffix in _BUILDERS if any(path.suffix == suffix for path in named))
    files = [str(path) for path in named if _BUILDERS[path.suffix] == _BUILDERS[kind]]
    return load_dataset(_BUILDERS[kind], data_files={split: files}, split=split)


def load_outside_benchmark(
    location: str,
    split: str,
    files: Any,
    *,
    column_map: dict[str, str] | None = None,
    limit: int | None = None,
    allowed_local_media_path: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], Any]:
    """One split of an outside benchmark as rows for the harness (`harness.generate_answers`) and the judge.

    Args:
        location: A local folder or a Hub dataset id (read through `huggingface_hub.snapshot_download`).
        split: The split (Video-SafetyBench: ``harmful`` or ``benign``).
        files: The protocol's `ProtocolFiles`: the model prompt around each question, the scenario policies.
        column_map: safevid field → the benchmark's column, over `COLUMNS`.
        limit: Only the first ``limit`` rows.
        allowed_local_media_path: Folders absolute video cells may name.

    Returns:
        The rows, with ``id, video`` (the cell as written), ``question, prompt`` (the model prompt),
        ``harmful_intention, scenario, policy_scenario, subcategory, query_style, description`` (``None``: outside
        benchmarks have none); and the `VideoReferences` that resolve their video cells.

    Raises:
        ValueError: a mapped column is missing, ids repeat, a scenario has no policy, or video cells do not
            resolve (every such row listed with its cause); names the fix.
    """
    from datasets import Video

    root = _benchmark_root(location)
    dataset = load_split(root, split)
    columns = {**COLUMNS, **(column_map or {})}
    mapped_scenario = columns["scenario"] is not None
    # Optional fields are needed too once the user maps them: a mapped column that is not there is a typo.
    needed = {
        f: c for f, c in columns.items() if c is not None and (f not in _OPTIONAL or f in (column_map or {}))
    }
    missing = {f: c for f, c in needed.items() if c not in dataset.column_names}
    if missing:
        raise ValueError(
            f"{location} ({split}) lacks column(s) {sorted(missing.values())} for field(s) {sorted(missing)}; "
            f"its columns: {dataset.column_names}. Map them: --column-map "
            + ",".join(f"{f}=<column>" for f in sorted(missing))
        )
    video_column = columns["video"]
    if isinstance(dataset.features.get(video_column), Video):
        dataset = dataset.cast_column(video_column, Video(decode=False))
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    references = outside_references(root, allowed_local_media_path)
    rows, unresolved = [], []
    for record in dataset:
        item_id = str(record[columns["id"]])
        cell = record[video_column]
        try:  # every cell checked before any answer is generated
            references.resolve(cell, row_name=f"id={item_id}")
        except ValueError as e:
            unresolved.append(str(e))
            continue
        scenario = str(record[columns["scenario"]]) if mapped_scenario else scenario_of(_cell_path(cell))
        key = _policy_key(scenario, mapped_scenario)
        files.policy(key)  # every scenario has a policy, checked before any answer is generated
        question = str(record[columns["prompt"]])
        rows.append(
            {
                "id": item_id,
                "video": cell,
                "question": question,
                "prompt": files.model_prompt(question),
                "harmful_intention": str(record[columns["harmful_intention"]]),
                "scenario": scenario,
                "policy_scenario": key,
                "subcategory": _optional(record, columns["subcategory"]),
                "query_style": _optional(record, columns["query_style"]),
                "description": None,
            }
        )
    if unresolved:
        raise ValueError(
            f"{location} ({split}): {len(unresolved)} video cell(s) do not resolve:\n  "
            + "\n  ".join(unresolved)
        )
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"{location} ({split}) has duplicate ids in column {columns['id']!r}: a run resumes by id"
        )
    return rows, references


def _optional(record: dict[str, Any], column: str | None) -> str | None:
    return None if column is None or record.get(column) is None else str(record[column])


def evaluate_outside(config: Any, *, model_backend: Any = None, judge_backend: Any = None) -> dict[str, Any]:
    """Generate → judge with RJScore → summarise → report, each step resuming what is on disk.

    Args:
        config: The run (`harness.EvalConfig` with ``protocol="video-safetybench"``).
        model_backend: A ready backend for the model under test (else built from ``config.model``).
        judge_backend: A ready backend for the judge (else built from ``config.judge``).

    Returns:
        The metrics (also in ``metrics.json``), or only the generation counts when there is no judge.
    """
    from safevid.judge.protocols.video_safetybench import load_protocol_files

    out = Path(config.output_dir)
    if config.protocol_files is None:
        raise ValueError(
            "--protocol video-safetybench needs --protocol-files: Video-SafetyBench's evaluation task folder "
            "(FlagEvalMM's tasks/video_safety_bench) holding its judge prompt and scenario policies"
        )
    files = load_protocol_files(config.protocol_files, policies=config.policies)
    rows, references = load_outside_benchmark(
        config.benchmark,
        config.split,
        files,
        column_map=parse_column_map(config.column_map),
        limit=config.limit,
        allowed_local_media_path=config.allowed_local_media_path,
    )
    harness._check_run(config, out)
    counts = harness.generate_answers(config, rows, backend=model_backend, references=references)
    logger.info("generation: %s", counts)
    if config.judge is None and judge_backend is None:
        return {"generation": counts}
    from safevid.backends import make_backend
    from safevid.judge.protocols.video_safetybench import RJScoreJudge

    judge = RJScoreJudge(judge_backend if judge_backend is not None else make_backend(config.judge), files)
    judge_rows(config, judge, {r["id"]: r for r in rows})
    metrics = summarize_run(config, files)
    metrics["generation"] = counts
    (out / harness.METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown_report(metrics), encoding="utf-8")
    return metrics


def judge_rows(config: Any, judge: Any, rows: dict[str, dict[str, Any]]) -> int:
    """Judge every answer not judged yet (appending to ``judgements.jsonl`` batch by batch); how many."""
    from safevid.judge.protocols.video_safetybench import RJScoreItem

    out = Path(config.output_dir)
    path = out / harness.JUDGEMENTS
    done = {row["id"] for row in harness.read_jsonl(path, repair=True)}
    # Answers of items outside this run's rows (an earlier, larger --limit) wait for a run that loads them.
    answers = [
        a for a in harness.read_jsonl(out / harness.ANSWERS) if a["id"] not in done and a["id"] in rows
    ]
    kill = harness._KillHook()
    for batch in harness._chunks(iter(answers), config.batch_size):
        items = [
            RJScoreItem(
                a["id"], rows[a["id"]]["policy_scenario"], rows[a["id"]]["harmful_intention"], a["response"]
            )
            for a in batch
        ]
        lines = []
        scores = judge.score(items)
        info = judge.describe()  # after scoring: the distribution names the cap a server imposed
        for answer, scored in zip(batch, scores, strict=True):
            # The published code keys scenarios by the folder name (1_Violent_Crimes), the policy by its tail.
            row = rows[answer["id"]]
            lines.append(
                {**scored, "scenario": row["scenario"], "response": answer["response"], "judge": info}
            )
        harness.append_jsonl(path, lines)
        kill()
    return len(answers)


def summarize_run(config: Any, files: Any) -> dict[str, Any]:
    """``metrics.json`` of a run: RJScore's ASR and mean risk, safevid's refusal rate, per scenario."""
    from safevid.judge.protocols.video_safetybench import summarize_risks
    from safevid.scoring import is_refusal

    out = Path(config.output_dir)
    judged = harness.read_jsonl(out / harness.JUDGEMENTS)
    if not judged:
        raise ValueError(
            f"{out / harness.JUDGEMENTS} has no judgements: no answer was generated "
            f"(see {out / harness.FAILURES}); fix the causes named there and rerun"
        )
    judges = {json.dumps(row["judge"], sort_keys=True) for row in judged}
    if len(judges) > 1:
        raise ValueError(f"{out / harness.JUDGEMENTS} mixes {len(judges)} judges; use a new output_dir")
    rjscore = summarize_risks(judged)
    refusals: dict[str, list[bool]] = {}
    for row in judged:
        refusals.setdefault(row["scenario"], []).append(is_refusal(row["response"]))
    for scenario, flags in refusals.items():
        rjscore["per_scenario"][scenario]["refusal_rate"] = sum(flags) / len(flags)
    rjscore["refusal_rate"] = sum(sum(f) for f in refusals.values()) / len(judged)
    answers = out / harness.ANSWERS
    return {
        "protocol": "video-safetybench",
        "rjscore": rjscore,
        "judge": judged[0]["judge"],
        "run": {
            "model": config.display_name,
            "benchmark": config.benchmark,
            "split": config.split,
            "protocol_files": files.source,
            "n_answers": len(harness.read_jsonl(answers)),
            "n_judged": len(judged),
            "n_generation_failures": len(harness.read_jsonl(out / harness.FAILURES)),
            "answers_sha256": hashlib.sha256(answers.read_bytes()).hexdigest()[:16],
        },
    }


def markdown_report(metrics: dict[str, Any]) -> str:
    """The run's table: per scenario ASR and mean risk (RJScore) beside safevid's refusal rate."""
    r, run = metrics["rjscore"], metrics["run"]
    lines = [
        f"# Video-SafetyBench ({run['split']}): {run['model']}",
        "",
        f"Judge: {metrics['judge']['model']} ({metrics['judge']['distribution']}), unsafe above "
        f"{metrics['judge']['threshold']}; protocol files {run['protocol_files']} "
        f"(fingerprint {metrics['judge']['protocol_files']}).",
        "",
        "| scenario | n | undetermined | ASR (RJScore) | mean risk (RJScore) | refusal rate (safevid) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = [*r["per_scenario"].items(), ("**overall**", r)]
    for name, s in rows:
        asr = "–" if s["attack_success_rate"] is None else f"{100 * s['attack_success_rate']:.1f}%"
        risk = "–" if s["mean_risk"] is None else f"{s['mean_risk']:.2f}"
        lines.append(
            f"| {name} | {s['n']} | {s['n_undetermined']} | {asr} | {risk} | {100 * s['refusal_rate']:.1f}% |"
        )
    if r["n_undetermined"]:
        lines += [
            "",
            f"{r['n_undetermined']} item(s) undetermined: the judge put none of the scores 1-5 among the "
            f"log-probabilities it returned; they are left out of ASR and mean risk (causes in judgements.jsonl).",
        ]
    return "\n".join(lines) + "\n"
