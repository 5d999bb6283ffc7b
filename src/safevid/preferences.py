"""Preference data built elsewhere → SafeVid's format, converted and validated once.

Accepted formats (`FORMATS`):

- ``align-anything``: PKU-Alignment's text-video-to-text rows: ``prompt``, ``video_path``, ``response_1``,
  ``response_2`` and ``overall_response`` (1 or 2, the preferred response).
- ``llamafactory``: LLaMA-Factory's sharegpt ranking rows: ``conversations`` (one user turn whose text holds one
  ``<video>`` placeholder; ``from``/``value`` or ``role``/``content``), ``chosen`` and ``rejected`` (a message or a
  string) and ``videos`` (one path, relative to the media folder: `video_root`, else the dataset's folder).
- ``columns``: any dataset, by a column map from SafeVid's names (``video``, ``prompt``, ``chosen``, ``rejected``;
  optionally ``id``, ``domain``, ``subcategory``, ``query_style``, ``description``) to the dataset's columns.

Each row's video cell is resolved by `safevid.video.references.VideoReferences` (so absolute paths are refused unless
allowed), probed, and embedded. A row that cannot be converted — video unresolvable or undecodable, preference
missing, text empty, responses identical, more than one turn or video — is rejected with its name and cause into
``.safevid-conversion/rejects-<split>.jsonl``, counted per reason in the summary, and the conversion stops with an
error once more than `max_rejected_fraction` of a split is rejected. The output is a SafeVid-format folder (both
configs, ``data/<config>/<split>-*.parquet``, a card), written to a staging folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from safevid.schema import DEFAULT_COLUMNS, conversational_features, default_features, to_conversational
from safevid.video.references import VideoReferenceError, VideoReferences

FORMATS = ("align-anything", "llamafactory", "columns")
REQUIRED_MAPPED = ("video", "prompt", "chosen", "rejected")
OPTIONAL_MAPPED = ("id", "domain", "subcategory", "query_style", "description")
REPORT_FOLDER = ".safevid-conversion"  # hidden: rejects name local paths, so it is never pushed
_ROWS_PER_GROUP = 16  # rows hold whole videos: keep the write buffer small


class TooManyRejected(ValueError):
    """A conversion stopped: more than `max_rejected_fraction` of a split was rejected."""


class RowRejected(Exception):
    """A row that cannot become a SafeVid row; ``reason`` is a short code, ``cause`` the detail."""

    def __init__(self, reason: str, cause: str):
        self.reason, self.cause = reason, cause
        super().__init__(f"{reason}: {cause}")


@dataclass
class ConversionReport:
    """What a conversion kept and rejected, per split and reason.

    Attributes:
        source (`str`): the dataset converted.
        format (`str`): its format.
        rows (`dict[str, int]`): rows written per split.
        total (`dict[str, int]`): rows read per split.
        rejected (`Counter`): rejected rows per ``"<split>: <reason>"``.
        examples (`dict[str, list[str]]`): the first rejected rows per reason, with their causes.
        notes (`list[str]`): what was converted but not carried (e.g. system prompts).
    """

    source: str
    format: str
    rows: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def format_summary(self) -> str:
        lines = [f"[safevid] converted {self.source} ({self.format}):"]
        for split, total in self.total.items():
            lines.append(f"  {split}: {self.rows.get(split, 0)} of {total} rows converted")
        for reason, count in sorted(self.rejected.items()):
            lines.append(f"  rejected {count} ({reason}), e.g. {'; '.join(self.examples[reason][:2])}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "rows": self.rows,
            "total": self.total,
            "rejected": dict(self.rejected),
            "notes": self.notes,
        }


def parse_column_map(text: str | None) -> dict[str, str]:
    """``"video=video_path,prompt=question,..."`` → ``{"video": "video_path", ...}``, checked.

    Raises:
        `ValueError`: a malformed pair, an unknown SafeVid name, or a required name missing.
    """
    mapping: dict[str, str] = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        name, sep, column = (part.strip() for part in pair.partition("="))
        if not sep or not name or not column:
            raise ValueError(f"column map: {pair.strip()!r} is not `safevid_name=dataset_column`")
        if name not in REQUIRED_MAPPED + OPTIONAL_MAPPED:
            raise ValueError(
                f"column map: {name!r} is not a SafeVid column; map some of {list(REQUIRED_MAPPED + OPTIONAL_MAPPED)}"
            )
        mapping[name] = column
    missing = [name for name in REQUIRED_MAPPED if name not in mapping]
    if missing:
        raise ValueError(
            f"column map: map {missing} too (e.g. `video=video_path,prompt=question,chosen=safe,rejected=unsafe`)"
        )
    return mapping


def load_source(
    source: str, *, config: str | None = None, split: str = "train"
) -> tuple[Any, VideoReferences]:
    """One split of a dataset to convert, and where its relative video cells point.

    ``source`` is a data file (``.json``, ``.jsonl``, ``.parquet``, ``.csv``: its folder is the dataset's folder,
    as LLaMA-Factory's ``dataset_dir``), a local dataset folder, or a Hub id (relative cells are its files).
    """
    from datasets import load_dataset

    local = Path(source).expanduser()
    if local.is_file():
        builder = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}.get(local.suffix)
        if builder is None:
            raise ValueError(f"{source}: a data file must be .json, .jsonl, .parquet or .csv")
        dataset = load_dataset(builder, data_files={split: str(local)}, split=split)
        return dataset, VideoReferences(dataset_dir=str(local.parent))
    dataset = load_dataset(str(local) if local.is_dir() else source, config, split=split)
    if local.is_dir():
        return dataset, VideoReferences(dataset_dir=str(local))
    return dataset, VideoReferences(hub_dataset=source)


def row_mapper(fmt: str, columns: list[str], column_map: dict[str, str] | None = None) -> Callable:
    """The function turning one source row into ``{video, prompt, chosen, rejected, ...}`` (or `RowRejected`).

    Raises:
        `ValueError`: an unknown format, or the dataset lacks a column the format needs (named, with the columns
            it has).
    """
    needs = {
        "align-anything": ["prompt", "video_path", "response_1", "response_2", "overall_response"],
        "llamafactory": ["conversations", "chosen", "rejected", "videos"],
    }
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {list(FORMATS)}")
    if fmt == "columns":
        column_map = column_map or parse_column_map(None)
        needs["columns"] = list(column_map.values())
    missing = [name for name in needs[fmt] if name not in columns]
    if missing:
        hint = " Map them with `--format columns --column-map ...`." if fmt != "columns" else ""
        raise ValueError(f"the {fmt} format needs the column(s) {missing}; the dataset has {columns}.{hint}")
    if fmt == "align-anything":
        return _align_anything
    if fmt == "llamafactory":
        return _llamafactory
    assert column_map is not None
    return lambda row: {name: row[column] for name, column in column_map.items()}


def _align_anything(row: dict[str, Any]) -> dict[str, Any]:
    choice = str(row["overall_response"]).strip()
    if choice not in ("1", "2"):
        raise RowRejected("no_preference", f"overall_response is {row['overall_response']!r}, not 1 or 2")
    other = "2" if choice == "1" else "1"
    return {
        "video": row["video_path"],
        "prompt": row["prompt"],
        "chosen": row[f"response_{choice}"],
        "rejected": row[f"response_{other}"],
    }


_USER_ROLES, _ROLE_KEYS, _TEXT_KEYS = ("human", "user"), ("from", "role"), ("value", "content")


def _message(message: Any, what: str) -> tuple[str | None, str]:
    if isinstance(message, str):
        return None, message
    if not isinstance(message, dict):
        raise RowRejected("bad_message", f"{what} is a {type(message).__name__}, not a message")
    role = next((message[key] for key in _ROLE_KEYS if message.get(key) is not None), None)
    text = next((message[key] for key in _TEXT_KEYS if message.get(key) is not None), None)
    if not isinstance(text, str):
        raise RowRejected("bad_message", f"{what} has no text (`value` or `content`)")
    return role, text


def _llamafactory(row: dict[str, Any]) -> dict[str, Any]:
    turns = row["conversations"] or []
    if len(turns) != 1:
        raise RowRejected(
            "multi_turn",
            f"{len(turns)} turns in `conversations`; SafeVid rows hold one user turn (no history)",
        )
    role, text = _message(turns[0], "the turn")
    if role not in _USER_ROLES:
        raise RowRejected("multi_turn", f"the turn is from {role!r}, not the user")
    if row.get("images"):
        raise RowRejected("images", "the row has `images`; video preference rows only")
    videos = row["videos"] or []
    if len(videos) != 1 or text.count("<video>") != 1:
        raise RowRejected(
            "video_count",
            f"{len(videos)} video(s) and {text.count('<video>')} <video> placeholder(s); one of each",
        )
    return {
        "video": videos[0],
        "prompt": text.replace("<video>", "").strip(),
        "chosen": _message(row["chosen"], "`chosen`")[1],
        "rejected": _message(row["rejected"], "`rejected`")[1],
    }


def convert_preferences(
    splits: dict[str, Any],
    fmt: str,
    output_dir: str | os.PathLike[str],
    *,
    references: VideoReferences,
    source_name: str,
    column_map: dict[str, str] | None = None,
    max_rejected_fraction: float = 0.01,
) -> ConversionReport:
    """Convert and validate every row of ``splits`` into a SafeVid-format folder at ``output_dir``.

    Args:
        splits (`dict[str, datasets.Dataset]`): the source splits, by name.
        fmt (`str`): one of `FORMATS`.
        output_dir: the folder to write (it must not exist; written to a staging folder and renamed).
        references (`VideoReferences`): how the video cells resolve.
        source_name (`str`): names the source in messages and the card.
        column_map (`dict[str, str]`, *optional*): SafeVid name → source column, for the ``columns`` format.
        max_rejected_fraction (`float`, defaults to 0.01): the conversion stops, with an error, once more than this
            share of a split's rows is rejected.

    Returns:
        `ConversionReport`: the counts; also written to ``.safevid-conversion/summary.json`` with the rejects.

    Raises:
        `ValueError`: a missing column; `TooManyRejected` (a `ValueError`): too many rejected rows, naming the
            reasons and ``<output>.rejected/``, where the rejects are kept (nothing else is written).
        `FileExistsError`: ``output_dir`` exists.
    """
    output = Path(output_dir)
    if output.exists():
        raise FileExistsError(f"{output} exists; remove it or choose another output folder")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}-staging-"))
    report = ConversionReport(source_name, fmt)
    try:
        for split, dataset in splits.items():
            mapper = row_mapper(fmt, list(dataset.column_names), column_map)
            _convert_split(dataset, split, mapper, staging, references, report, max_rejected_fraction)
        _write_card(staging, report)
        os.replace(staging, output)
    except TooManyRejected as error:
        # Nothing is written, but the rejects are kept beside where the output would have been.
        kept = output.with_name(f"{output.name}.rejected")
        shutil.rmtree(kept, ignore_errors=True)
        shutil.move(staging / REPORT_FOLDER, kept)
        raise TooManyRejected(
            f"{error} Every rejected row and its cause: {kept}/. Fix them, or raise --max-rejected-fraction "
            "to convert without them."
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _convert_split(
    dataset: Any,
    split: str,
    mapper: Callable,
    folder: Path,
    references: VideoReferences,
    report: ConversionReport,
    max_rejected_fraction: float,
) -> None:
    import pyarrow.parquet as pq

    features = {"default": default_features(), "conversational": conversational_features()}
    writers = {
        name: pq.ParquetWriter(_data_file(folder, name, split), features[name].arrow_schema)
        for name in features
    }
    reports = folder / REPORT_FOLDER
    reports.mkdir(exist_ok=True)
    total, allowed = len(dataset), int(max_rejected_fraction * len(dataset))
    report.total[split], report.rows[split] = total, 0
    rejected, system_prompts = 0, 0
    buffer: list[dict[str, Any]] = []
    try:
        with (reports / f"rejects-{split}.jsonl").open("w", encoding="utf-8") as rejects:
            for index, row, name in _named_rows(dataset, split, report.source):
                try:
                    buffer.append(_safevid_row(mapper(row), index, split, name, references))
                except RowRejected as error:
                    rejected += 1
                    key = f"{split}: {error.reason}"
                    report.rejected[key] += 1
                    report.examples.setdefault(key, []).append(f"{name}: {error.cause}")
                    record = {
                        "split": split,
                        "row": index,
                        "name": name,
                        "reason": error.reason,
                        "cause": error.cause,
                    }
                    rejects.write(json.dumps(record) + "\n")
                    if rejected > allowed:
                        raise TooManyRejected(
                            f"{report.format_summary()}\nStopped: {rejected} of {total} rows of the {split} split "
                            f"rejected, over max_rejected_fraction={max_rejected_fraction}."
                        ) from None
                    continue
                system_prompts += bool(row.get("system"))
                if len(buffer) >= _ROWS_PER_GROUP:
                    _flush(buffer, writers, features)
            _flush(buffer, writers, features)
    finally:
        for writer in writers.values():
            writer.close()
    report.rows[split] = total - rejected
    if system_prompts:
        report.notes.append(
            f"{split}: {system_prompts} row(s) have a `system` prompt, not carried (SafeVid has none)"
        )


def _named_rows(dataset: Any, split: str, source: str) -> Iterator[tuple[int, dict[str, Any], str]]:
    from datasets import Video

    # Video cells are read through the references only, never decoded by `datasets` itself.
    videos = [name for name, feature in dataset.features.items() if isinstance(feature, Video)]
    for name in videos:
        dataset = dataset.cast_column(name, Video(decode=False))
    for index, row in enumerate(dataset):
        yield index, row, f"{source} [{split}] row {index}"


def _safevid_row(
    mapped: dict[str, Any], index: int, split: str, name: str, references: VideoReferences
) -> dict[str, Any]:
    from safevid.video import VideoDecodeError, probe_video

    for key in ("prompt", "chosen", "rejected"):
        if not isinstance(mapped.get(key), str) or not mapped[key].strip():
            raise RowRejected("empty_text", f"`{key}` is empty or not text")
    if mapped["chosen"].strip() == mapped["rejected"].strip():
        raise RowRejected("identical_responses", "`chosen` and `rejected` are the same text")
    cell = mapped["video"]
    try:
        resolved = references.resolve(cell, row_name=name)
        probe_video(resolved)
    except VideoReferenceError as error:
        raise RowRejected(f"video_{error.reason}", f"video {error.reference!r}: {error.cause}") from None
    except VideoDecodeError as error:
        raise RowRejected("undecodable_video", f"video {cell!r}: {error.cause}") from None
    data = resolved if isinstance(resolved, bytes) else resolved.read_bytes()
    video_id = hashlib.sha256(data).hexdigest()
    reference = cell.get("path") if isinstance(cell, dict) else cell
    suffix = PurePosixPath(str(reference or "")).suffix.lower() or ".mp4"
    row = dict.fromkeys(DEFAULT_COLUMNS)
    row.update({key: value for key, value in mapped.items() if key in OPTIONAL_MAPPED and value is not None})
    row.update(
        id=str(mapped.get("id") or f"{split}-{index:06d}"),
        video={"bytes": data, "path": f"{video_id}{suffix}"},
        video_id=video_id,
        prompt=mapped["prompt"],
        chosen=mapped["chosen"],
        rejected=mapped["rejected"],
        rule_ids=[],
        frame_timestamps=[],
        generators=json.dumps({}),
    )
    return row


def _flush(buffer: list[dict[str, Any]], writers: dict[str, Any], features: dict[str, Any]) -> None:
    import pyarrow as pa

    if not buffer:
        return
    for name, rows in (("default", buffer), ("conversational", [to_conversational(row) for row in buffer])):
        encoded = [features[name].encode_example(row) for row in rows]
        writers[name].write_table(pa.Table.from_pylist(encoded, schema=features[name].arrow_schema))
    buffer.clear()


def _data_file(folder: Path, config: str, split: str) -> Path:
    path = folder / "data" / config / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_card(folder: Path, report: ConversionReport) -> None:
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        task_categories=["video-text-to-text"], tags=["safety", "dpo", "preference", "video", "safevid"]
    )
    configs = {
        name: {
            "data_files": [
                {"split": split, "path": f"data/{name}/{split}-*.parquet"} for split in report.total
            ],
            **({"default": True} if name == "default" else {}),
        }
        for name in ("default", "conversational")
    }
    MetadataConfigs(configs).to_dataset_card_data(data)
    counts = "\n".join(
        f"| {split} | {report.rows[split]} | {total - report.rows[split]} |"
        for split, total in report.total.items()
    )
    body = (
        f"# {report.source}, in SafeVid's format\n\n"
        f"Converted by `safevid convert-preferences` from the {report.format} format of `{report.source}`; every "
        "video is embedded and was probed. Columns: see SafeVid's dataset format (provenance columns such as "
        "`sampling` are empty: training samples with its defaults or its `video_*` settings).\n\n"
        f"| split | rows | rejected |\n|---|---|---|\n{counts}\n"
    )
    (folder / REPORT_FOLDER / "summary.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(folder / "README.md")
