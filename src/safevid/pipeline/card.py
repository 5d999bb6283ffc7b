"""The dataset card (``README.md``): YAML metadata built in code, the prose rendered from a Jinja template.

The YAML header — ``configs`` (``default`` and ``conversational``, ``data_files`` per split),
``dataset_info`` (features, including ``dtype: video``, and split sizes), license, gating fields,
tags — is produced with `huggingface_hub.DatasetCardData` and `datasets`' own metadata classes, the
same code `Dataset.push_to_hub` uses, so `load_dataset(<folder>)` reads it as the Hub would. The body
comes from a template (``publish.card_template``, or the packaged ``dataset_card.md.jinja``; a custom
template may ``{% extends "dataset_card.md.jinja" %}`` and override its blocks) and shows the taxonomy
table, counts per domain / subcategory / style, length statistics and provenance (models, revisions,
prompt hashes, sampling configuration — never a token).

`card_metadata`, `size_category` and `render_card` are the card writer's public pieces; the SafeVidBench
build (`safevid.pipeline.benchmark`) writes its card with them too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safevid.pipeline.context import BuildContext


def card_yaml(ctx: BuildContext, files: dict[str, dict[str, list[Path]]], split_bytes: dict[str, dict[str, int]],
              rows: dict[str, dict[str, int]]) -> Any:  # fmt: skip
    """The metadata of the card (`DatasetCardData`: configs, dataset_info, license, gating, tags)."""
    from datasets import DatasetInfo, SplitDict, SplitInfo

    from safevid.schema import conversational_features, default_features

    cfg = ctx.config.publish
    features = {
        "default": default_features(cfg.embed_videos),
        "conversational": conversational_features(cfg.embed_videos),
    }
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
    data = card_metadata(
        license=cfg.license,
        pretty_name=cfg.pretty_name,
        tags=["safety", "alignment", "dpo", "preference", "video", "safevid"],
        total=sum(rows["default"].values()),
        configs=configs,
        infos=infos,
    )
    if cfg.gated:
        data["extra_gated_prompt"] = cfg.extra_gated_prompt
        data["extra_gated_fields"] = dict(cfg.extra_gated_fields)
    return data


def card_metadata(*, license: str, pretty_name: str, tags: list[str], total: int, configs: dict[str, Any],
                  infos: dict[str, Any]) -> Any:  # fmt: skip
    """A card's `huggingface_hub.DatasetCardData`: ``configs`` (``data_files`` per config) and ``dataset_info``
    (a `datasets.DatasetInfo` per config) written by `datasets`' own metadata classes, so `load_dataset` reads
    them as the Hub would."""
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        task_categories=["video-text-to-text"],
        language=["en"],
        tags=tags,
        size_categories=[size_category(total)],
    )
    MetadataConfigs(configs).to_dataset_card_data(data)
    DatasetInfosDict(infos).to_dataset_card_data(data)
    return data


# The Hub's size categories, by upper bound.
_SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` value for a dataset of ``n`` rows.

    ```python
    >>> size_category(999), size_category(250_000), size_category(10**13)
    ('n<1K', '100K<n<1M', 'n>1T')
    ```
    """
    return next((label for limit, label in _SIZE_CATEGORIES if n < limit), "n>1T")


def render_card(
    path: Path, header: Any, *, template: str, card_template: Path | None, **context: Any
) -> None:
    """Write a card: ``header`` (`DatasetCardData`) as YAML front matter, then the body rendered from
    ``card_template`` (a user's file, which may ``{% extends %}`` the packaged template) or the packaged
    ``template``; strict, so a variable the template uses but ``context`` lacks is an error."""
    import jinja2

    loaders: list[jinja2.BaseLoader] = []
    if card_template is not None:
        loaders.append(jinja2.FileSystemLoader(card_template.parent))
        template = card_template.name
    loaders.append(jinja2.PackageLoader("safevid", "pipeline"))
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)  # fmt: skip
    body = env.get_template(template).render(**context)
    path.write_text(f"---\n{header.to_yaml().rstrip()}\n---\n\n{body}", encoding="utf-8")


def write_card(ctx: BuildContext, path: Path, *, manifest: dict[str, Any], files: dict[str, dict[str, list[Path]]],
               split_bytes: dict[str, dict[str, int]]) -> None:  # fmt: skip
    """Render the card into ``path`` (the staging folder's ``README.md``)."""
    publish = manifest["publish"]
    rows = {name: {s: publish["rows"].get(s, 0) for s in files[name]} for name in files}
    cfg = ctx.config.publish
    taxonomy = ctx.taxonomy
    subcategory_counts = publish["counts"]["subcategory"]
    render_card(
        path,
        card_yaml(ctx, files, split_bytes, rows),
        template="dataset_card.md.jinja",
        card_template=ctx.config.resolve_path(cfg.card_template) if cfg.card_template else None,
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
