"""The dataset card (``README.md``): YAML metadata built in code, the prose rendered from a Jinja template.

The YAML header — ``configs`` (``default`` and ``conversational``, ``data_files`` per split),
``dataset_info`` (features, including ``dtype: video``, and split sizes), license, gating fields,
tags — is produced with `huggingface_hub.DatasetCardData` and `datasets`' own metadata classes, the
same code `Dataset.push_to_hub` uses, so `load_dataset(<folder>)` reads it as the Hub would. The body
comes from a template (``publish.card_template``, or the packaged ``dataset_card.md.jinja``; a custom
template may ``{% extends "dataset_card.md.jinja" %}`` and override its blocks) and shows the taxonomy
table, counts per domain / subcategory / style, length statistics and provenance (models, revisions,
prompt hashes, sampling configuration — never a token).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safevid.pipeline.context import BuildContext


def card_yaml(ctx: BuildContext, files: dict[str, dict[str, list[Path]]], split_bytes: dict[str, dict[str, int]],
              rows: dict[str, dict[str, int]]) -> str:  # fmt: skip
    """The YAML metadata of the card (without the ``---`` fences)."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    from safevid.schema import conversational_features, default_features

    cfg = ctx.config.publish
    features = {
        "default": default_features(cfg.embed_videos),
        "conversational": conversational_features(cfg.embed_videos),
    }
    total = sum(rows["default"].values())
    data = DatasetCardData(
        license=cfg.license,
        pretty_name=cfg.pretty_name,
        task_categories=["video-text-to-text"],
        language=["en"],
        tags=["safety", "alignment", "dpo", "preference", "video", "safevid"],
        size_categories=[_size_category(total)],
    )
    configs = {}
    infos = {}
    for name in ("default", "conversational"):
        splits = sorted(files[name])
        configs[name] = {
            "data_files": [{"split": s, "path": f"data/{name}/{s}-*.parquet"} for s in splits],
            **({"default": True} if name == "default" else {}),
        }
        split_dict = SplitDict()
        for s in splits:
            split_dict.add(SplitInfo(name=s, num_bytes=split_bytes[name][s], num_examples=rows[name][s]))
        infos[name] = DatasetInfo(features=features[name], splits=split_dict)
    MetadataConfigs(configs).to_dataset_card_data(data)
    DatasetInfosDict(infos).to_dataset_card_data(data)
    if cfg.gated:
        data["extra_gated_prompt"] = cfg.extra_gated_prompt
        data["extra_gated_fields"] = dict(cfg.extra_gated_fields)
    return data.to_yaml()


def _size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "1M<n<10M"


def write_card(ctx: BuildContext, path: Path, *, manifest: dict[str, Any], files: dict[str, dict[str, list[Path]]],
               split_bytes: dict[str, dict[str, int]]) -> None:  # fmt: skip
    """Render the card into ``path`` (the staging folder's ``README.md``)."""
    import jinja2

    publish = manifest["publish"]
    rows = {name: {s: publish["rows"].get(s, 0) for s in files[name]} for name in files}
    header = card_yaml(ctx, files, split_bytes, rows)
    cfg = ctx.config.publish
    loaders: list[jinja2.BaseLoader] = []
    template_name = "dataset_card.md.jinja"
    if cfg.card_template:
        template_path = ctx.config.resolve_path(cfg.card_template)
        loaders.append(jinja2.FileSystemLoader(template_path.parent))
        template_name = template_path.name
    loaders.append(jinja2.PackageLoader("safevid", "pipeline"))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)  # fmt: skip
    taxonomy = ctx.taxonomy
    subcategory_counts = publish["counts"]["subcategory"]
    body = env.get_template(template_name).render(
        pretty_name=cfg.pretty_name,
        license=cfg.license,
        repo_id=cfg.repo_id or f"<org>/{Path(ctx.config.output_dir).name}",
        total=sum(publish["rows"].values()),
        rows=publish["rows"],
        counts=publish["counts"],
        dropped=publish["dropped"],
        lengths=publish["lengths"],
        stages=manifest["stages"],
        taxonomy=taxonomy,
        subcategory_counts=subcategory_counts,
        models=manifest["models"],
        prompts=manifest["prompts"],
        sampling=json.dumps(ctx.config.sampling, sort_keys=True),
        judge_mode=ctx.config.gates.judge_mode,
        embed_videos=cfg.embed_videos,
        fingerprint=manifest["fingerprint"],
    )
    path.write_text(f"---\n{header.rstrip()}\n---\n\n{body}", encoding="utf-8")
