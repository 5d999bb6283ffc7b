"""Convert preference data built elsewhere (align-anything, LLaMA-Factory, any by a column map) to SafeVid's format.

Examples::

    safevid convert-preferences data/align-anything-t2v/train.jsonl out/aa --format align-anything
    safevid convert-preferences data/llamafactory/video_dpo.json out/lf --format llamafactory --video-root data/media
    safevid convert-preferences <org>/<dataset> out/mine --format columns \\
        --column-map video=video_path,prompt=question,chosen=safe_response,rejected=unsafe_response \\
        --push-to-hub my-org/mine-safevid

Every row is converted and its video resolved and probed once (relative paths inside the dataset's folder or
Hub repository, or `--video-root`; absolute ones only under `--allowed-local-media-path`); rejected rows are
listed with their cause in ``<output>/.safevid-conversion/rejects-<split>.jsonl`` and summarised, and the
command fails once more than `--max-rejected-fraction` of a split is rejected. The output trains with
``recipes/dpo.py --dataset_name <output>`` (or pass the original with ``--dataset_format``).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from safevid.preferences import FORMATS

    parser.add_argument(
        "source", help="A data file (.json/.jsonl/.parquet/.csv), a dataset folder or a Hub id."
    )
    parser.add_argument("output", help="The SafeVid-format folder to write (must not exist).")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt", help="The source's format.")
    parser.add_argument(
        "--column-map",
        help="For --format columns: SafeVid name=source column pairs, comma-separated (video, prompt, chosen, "
        "rejected; optionally id, domain, subcategory, query_style, description).",
    )
    parser.add_argument("--config", help="Config (subset) of a Hub or folder dataset.")
    parser.add_argument(
        "--split",
        action="append",
        dest="splits",
        help="A split to convert (repeat for several; default train).",
    )
    parser.add_argument(
        "--video-root", help="Folder that relative video cells name (default: the dataset's)."
    )
    parser.add_argument(
        "--allowed-local-media-path",
        action="append",
        default=[],
        metavar="ROOT",
        help="A root under which absolute video cells may be read (repeatable); by default none may.",
    )
    parser.add_argument(
        "--max-rejected-fraction",
        type=float,
        default=0.01,
        help="Fail once more than this share of a split's rows is rejected (default 0.01).",
    )
    parser.add_argument(
        "--license",
        help="License of the converted data (a Hub license id, e.g. cc-by-nc-4.0); default: the source card's. "
        "--push-to-hub refuses a conversion whose license is unknown.",
    )
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="Then push the folder to this dataset repo.")
    parser.add_argument("--private", action="store_true", help="Create the pushed repo private.")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from safevid.preferences import (
        REPORT_FOLDER,
        convert_preferences,
        load_source,
        parse_column_map,
        source_metadata,
    )

    if args.push_to_hub and args.license is None and source_metadata(args.source)[0] is None:
        print(
            f"error: not converting for --push-to-hub: {args.source} declares no license in its card, so the "
            "converted copy's terms are unknown. Read the source's terms and pass the license it is under, e.g. "
            "--license cc-by-nc-4.0.",
            file=sys.stderr,
        )
        return 1
    try:
        column_map = parse_column_map(args.column_map) if args.fmt == "columns" else None
        splits = args.splits or ["train"]
        loaded = {split: load_source(args.source, config=args.config, split=split) for split in splits}
        references = dataclasses.replace(
            loaded[splits[0]][1],
            video_root=args.video_root,
            allowed_local_media_path=tuple(args.allowed_local_media_path),
        )
        report = convert_preferences(
            {split: dataset for split, (dataset, _) in loaded.items()},
            args.fmt,
            args.output,
            references=references,
            source_name=args.source,
            column_map=column_map,
            max_rejected_fraction=args.max_rejected_fraction,
            license=args.license,
        )
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report.format_summary())
    print(f"[safevid] wrote {args.output} (rejected rows: {args.output}/{REPORT_FOLDER}/)")
    if args.push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(args.push_to_hub, repo_type="dataset", private=args.private, exist_ok=True)
        api.upload_folder(
            folder_path=args.output,
            repo_id=args.push_to_hub,
            repo_type="dataset",
            ignore_patterns=[f"{REPORT_FOLDER}/*"],  # the rejects name local paths
            commit_message=f"Convert {args.fmt} preference data to SafeVid's format",
        )
        print(f"[safevid] pushed to {args.push_to_hub}")
    return 0
