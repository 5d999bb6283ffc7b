"""Preference data built elsewhere → SafeVid's format, converted and validated once.

Accepted formats (`FORMATS`):

- ``align-anything``: PKU-Alignment's text-video-to-text rows: ``prompt`` (its ``<video>`` tag removed, as
  align-anything's ``AA_TV2T`` template does), ``video_path``, ``response_1``, ``response_2`` and
  ``overall_response`` (1 or 2, the preferred response).
- ``llamafactory``: LLaMA-Factory's sharegpt ranking rows: ``conversations`` or ``messages`` (one user turn whose
  text holds one ``<video>`` placeholder, optionally after a system turn; ``from``/``value`` or
  ``role``/``content``), ``chosen`` and ``rejected`` (a message or a string) and ``videos`` (one path, relative
  to the media folder: `video_root`, else the data file's folder).
- ``columns``: any dataset, by a column map from SafeVid's names (``video``, ``prompt``, ``chosen``, ``rejected``;
  optionally ``id``, ``domain``, ``subcategory``, ``query_style``, ``description``) to the dataset's columns; a
  prompt may be a list of messages holding one user turn.

A system prompt (a leading system turn or a ``system`` column) is counted in the report's notes, not carried:
SafeVid rows have none. The converted card carries the source's license (`source_metadata`), its Hub id as
``source_datasets`` and its ``size_categories``.

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

from safevid.datasets_io import load_split
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
        license (`str` or `list[str]`, *optional*): the source's license, carried into the card; `None`: unknown.
        source_datasets (`list[str]`): the source's Hub id, when it has one.
    """

    source: str
    format: str
    rows: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    license: str | list[str] | None = None
    source_datasets: list[str] = field(default_factory=list)

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
            "license": self.license,
            "source_datasets": self.source_datasets,
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

    ``source`` is a data file (``.json``, ``.jsonl``, ``.parquet``, ``.csv``), a local dataset folder, or a Hub
    id. Relative video cells resolve inside the folder of the split's data files (as align-anything's
    ``text-video-to-text/train_10k.json`` names ``./videos/...``, and as `datasets`' folder builders read a
    metadata file's ``file_name``), where an archive may stand for a folder (`VideoReferences`). A Hub dataset
    whose data files lie in a subfolder is fetched as that subfolder's snapshot (its archives included); one
    whose data files lie at its root has its cells fetched one by one.
    """
    from datasets import load_dataset

    local = Path(source).expanduser()
    if local.is_file():
        builder = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}.get(local.suffix)
        if builder is None:
            raise ValueError(f"{source}: a data file must be .json, .jsonl, .parquet or .csv")
        dataset = load_dataset(builder, data_files={split: str(local)}, split=split)
        return dataset, VideoReferences(dataset_dir=str(local.parent))
    path = str(local) if local.is_dir() else source
    dataset = load_split(path, config, split=split)
    folder = data_folder(path, config, split)
    if local.is_dir():
        return dataset, VideoReferences(dataset_dir=str(local / folder))
    if not folder:
        return dataset, VideoReferences(hub_dataset=source)
    from huggingface_hub import snapshot_download

    snapshot = snapshot_download(source, repo_type="dataset", allow_patterns=[f"{folder}/*"])
    return dataset, VideoReferences(dataset_dir=str(Path(snapshot) / folder))


def data_folder(path: str, config: str | None, split: str) -> str:
    """The folder (relative, POSIX; ``""`` for the root) holding the data files of ``split`` of a dataset
    folder or Hub id, as its card's ``configs`` (or `datasets`' file-name conventions) place them."""
    from datasets import load_dataset_builder

    files = load_dataset_builder(path, config).config.data_files or {}
    names = [str(name) for name in files.get(split, [])]
    if not names:
        return ""
    local = Path(path).expanduser()
    if local.is_dir():
        relative = [Path(os.path.relpath(name, local)).as_posix() for name in names]
    else:  # hf://datasets/<repo>@<revision>/<path in repo>
        relative = [
            name.split("@", 1)[-1].split("/", 1)[-1] if name.startswith("hf://") else name for name in names
        ]
    folder = os.path.commonpath([PurePosixPath(name).parent.as_posix() for name in relative])
    return "" if folder in (".", "") or folder.startswith("..") else folder


def row_mapper(fmt: str, columns: list[str], column_map: dict[str, str] | None = None) -> Callable:
    """The function turning one source row into ``{video, prompt, chosen, rejected, ...}`` (or `RowRejected`).

    Raises:
        `ValueError`: an unknown format, or the dataset lacks a column the format needs (named, with the columns
            it has).
    """
    needs = {
        "align-anything": ["prompt", "video_path", "response_1", "response_2", "overall_response"],
        "llamafactory": ["chosen", "rejected", "videos"],
    }
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {list(FORMATS)}")
    if fmt == "columns":
        column_map = column_map or parse_column_map(None)
        needs["columns"] = list(column_map.values())
    missing = [name for name in needs[fmt] if name not in columns]
    if fmt == "llamafactory" and not set(MESSAGE_COLUMNS) & set(columns):
        missing.insert(0, " or ".join(MESSAGE_COLUMNS))
    if missing:
        hint = " Map them with `--format columns --column-map ...`." if fmt != "columns" else ""
        raise ValueError(f"the {fmt} format needs the column(s) {missing}; the dataset has {columns}.{hint}")
    if fmt == "align-anything":
        return _align_anything
    if fmt == "llamafactory":
        return _llamafactory
    assert column_map is not None
    return _mapped_columns(column_map)


def _align_anything(row: dict[str, Any]) -> dict[str, Any]:
    choice = str(row["overall_response"]).strip()
    if choice not in ("1", "2"):
        raise RowRejected("no_preference", f"overall_response is {row['overall_response']!r}, not 1 or 2")
    other = "2" if choice == "1" else "1"
    prompt = row["prompt"]
    return {
        "video": row["video_path"],
        # align-anything's own template (`AA_TV2T`) drops the tag: the processor places the video itself.
        "prompt": prompt.replace("<video>", "").strip() if isinstance(prompt, str) else prompt,
        "chosen": row[f"response_{choice}"],
        "rejected": row[f"response_{other}"],
    }


_USER_ROLES, _ROLE_KEYS, _TEXT_KEYS = ("human", "user"), ("from", "role"), ("value", "content")
_SYSTEM_ROLE = "system"
MESSAGE_COLUMNS = ("conversations", "messages")  # LLaMA-Factory's sharegpt demos use both names


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


def _user_turn(turns: Any, what: str) -> tuple[str, str | None]:
    """The one user turn of a sharegpt message list, and its leading system turn's text (LLaMA-Factory moves
    that to the system prompt)."""
    if not isinstance(turns, list):
        raise RowRejected("bad_message", f"{what} is a {type(turns).__name__}, not a list of messages")
    system = None
    if turns and isinstance(turns[0], dict) and _message(turns[0], f"{what}[0]")[0] == _SYSTEM_ROLE:
        system, turns = _message(turns[0], f"{what}[0]")[1], turns[1:]
    if len(turns) != 1:
        raise RowRejected(
            "multi_turn",
            f"{len(turns)} turns in {what} (besides a system turn); SafeVid rows hold one user turn (no history)",
        )
    role, text = _message(turns[0], f"the turn of {what}")
    if role is not None and role not in _USER_ROLES:
        raise RowRejected("multi_turn", f"the turn of {what} is from {role!r}, not the user")
    return text, system


def _llamafactory(row: dict[str, Any]) -> dict[str, Any]:
    column = next(name for name in MESSAGE_COLUMNS if name in row)
    text, system = _user_turn(row[column] or [], f"`{column}`")
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
        "chosen": _response(row["chosen"], "`chosen`"),
        "rejected": _response(row["rejected"], "`rejected`"),
        "system": system or row.get("system"),
    }


def _response(value: Any, what: str) -> str:
    """A response: text, one message, or a list holding one assistant message."""
    if isinstance(value, list):
        if len(value) != 1:
            raise RowRejected("multi_turn", f"{what} holds {len(value)} messages; a response is one")
        value = value[0]
    return _message(value, what)[1]


def _mapped_columns(column_map: dict[str, str]) -> Callable:
    def mapper(row: dict[str, Any]) -> dict[str, Any]:
        mapped = {name: row[column] for name, column in column_map.items()}
        prompt = mapped["prompt"]
        if isinstance(prompt, list | dict):  # a message list: one user turn, as LLaMA-Factory's rows hold it
            text, system = _user_turn([prompt] if isinstance(prompt, dict) else prompt, "`prompt`")
            mapped.update(prompt=text.replace("<video>", "").strip(), system=system)
        for name in ("chosen", "rejected"):
            if isinstance(mapped[name], list | dict):
                mapped[name] = _response(mapped[name], f"`{name}`")
        return mapped

    return mapper


def convert_preferences(
    splits: dict[str, Any],
    fmt: str,
    output_dir: str | os.PathLike[str],
    *,
    references: VideoReferences,
    source_name: str,
    column_map: dict[str, str] | None = None,
    max_rejected_fraction: float = 0.01,
    license: str | None = None,
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
        license (`str`, *optional*): the license of the converted data; by default the source's, read from its
            card (`source_metadata`). The card carries it with ``source_datasets`` and ``size_categories``.

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
    known_license, source_datasets = source_metadata(source_name)
    report = ConversionReport(
        source_name, fmt, license=license or known_license, source_datasets=source_datasets
    )
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
                    mapped = mapper(row)
                    buffer.append(_safevid_row(mapped, index, split, name, references))
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
                system_prompts += bool(mapped.get("system") or row.get("system"))
                if len(buffer) >= _ROWS_PER_GROUP:
                    _flush(buffer, writers, features)
            _flush(buffer, writers, features)
    finally:
        for writer in writers.values():
            writer.close()
    report.rows[split] = total - rejected
    if system_prompts:
        report.notes.append(
            f"{split}: {system_prompts} row(s) have a system prompt (a `system` column or a leading system turn), "
            "not carried (SafeVid rows have none)"
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


def source_metadata(source: str) -> tuple[str | list[str] | None, list[str]]:
    """The license a source's card declares (`None` if none does) and its Hub id as ``source_datasets``.

    A local data file's card is the ``README.md`` of its folder or of the folder above (align-anything's
    ``text-video-to-text/train_10k.json`` sits under the repository's card); a folder's is its own.
    """
    from huggingface_hub import DatasetCard

    local = Path(source).expanduser()
    if local.exists():
        folders = [local] if local.is_dir() else [local.parent, local.parent.parent]
        for folder in folders:
            if (folder / "README.md").is_file():
                try:
                    return DatasetCard.load(folder / "README.md").data.get("license"), []
                except Exception:  # malformed YAML (a ValueError or yaml's own): no license is declared
                    return None, []
        return None, []
    try:
        card = DatasetCard.load(source, repo_type="dataset")
    except (
        Exception
    ):  # no card (EntryNotFoundError) or offline: the license is unknown, said where it matters
        return None, [source]
    return card.data.get("license"), [source]


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket of a row count.

    >>> size_category(999), size_category(1000), size_category(10_000), size_category(2_500_000)
    ('n<1K', '1K<n<10K', '10K<n<100K', '1M<n<10M')
    """
    bounds = ["1K", "10K", "100K", "1M", "10M", "100M", "1B", "10B", "100B", "1T"]
    if rows < 1000:
        return "n<1K"
    exponent = min(len(str(rows)) - 4, len(bounds) - 2)  # 1000..9999 -> 0
    return f"{bounds[exponent]}<n<{bounds[exponent + 1]}"


def _write_card(folder: Path, report: ConversionReport) -> None:
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        license=report.license,
        size_categories=[size_category(sum(report.rows.values()))],
        source_datasets=report.source_datasets or None,
        task_categories=["video-text-to-text"],
        tags=["safety", "dpo", "preference", "video", "safevid"],
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
