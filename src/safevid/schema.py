"""The row schema of SafeVid preference data, shared by the build pipeline, training and evaluation.

One build writes two configs of the same rows:

- ``default``: flat columns (below), easy to filter and inspect in the dataset viewer.
- ``conversational``: TRL's preference format: ``prompt`` is a list of chat messages whose user turn
  holds a ``{"type": "video"}`` content part followed by the query text, ``chosen`` and
  ``rejected`` are single assistant messages. The video itself stays in the ``video`` column, as
  images do in TRL's vision datasets, and the sampling metadata travels with the row.

`to_conversational` derives the second from the first, so they cannot drift. SafeVidBench rows
(`benchmark_features`) type their columns from the same table.
"""

from __future__ import annotations

from typing import Any

# Flat columns of the ``default`` config, in order. ``sampling`` and ``generators`` are JSON
# strings: a `safevid.video.VideoSampling.to_dict()` and ``{stage: {model, revision, prompt_sha}}``.
DEFAULT_COLUMNS: tuple[str, ...] = (
    "id",
    "video",
    "video_id",
    "prompt",
    "chosen",
    "rejected",
    "domain",
    "subcategory",
    "query_style",
    "description",
    "rule_ids",
    "frame_timestamps",
    "sampled_fps",
    "sampling",
    "generators",
)
# What training needs at the least; the rest is provenance.
REQUIRED_FOR_TRAINING: tuple[str, ...] = ("video", "prompt", "chosen", "rejected")
# Metadata columns carried unchanged into the ``conversational`` config.
CONVERSATIONAL_METADATA: tuple[str, ...] = (
    "id",
    "video_id",
    "domain",
    "subcategory",
    "query_style",
    "rule_ids",
    "frame_timestamps",
    "sampled_fps",
    "sampling",
)


# Flat columns of a SafeVidBench row, in order: the ``default`` columns less the responses, plus the
# risk's severity and whether the query is a benign contrast (the over-refusal split).
BENCHMARK_COLUMNS: tuple[str, ...] = (
    "id",
    "video",
    "video_id",
    "prompt",
    "domain",
    "subcategory",
    "severity",
    "query_style",
    "is_benign_contrast",
    "description",
    "rule_ids",
    "frame_timestamps",
    "sampled_fps",
    "sampling",
    "generators",
)


def _flat_features(columns: tuple[str, ...], embed_video: bool) -> Any:
    """`datasets.Features` of ``columns``, each typed once here so the row schemas cannot disagree."""
    from datasets import Features, List, Value, Video

    string = Value("string")
    types = {
        "id": string,
        "video": Video() if embed_video else string,
        "video_id": string,
        "prompt": string,
        "chosen": string,
        "rejected": string,
        "domain": string,
        "subcategory": string,
        "severity": string,
        "query_style": string,
        "is_benign_contrast": Value("bool"),
        "description": string,
        "rule_ids": List(string),
        "frame_timestamps": List(Value("float64")),
        "sampled_fps": Value("float64"),
        "sampling": string,
        "generators": string,
    }
    return Features({name: types[name] for name in columns})


def default_features(embed_video: bool = True) -> Any:
    """`datasets.Features` of the ``default`` config.

    Args:
        embed_video (`bool`, defaults to `True`):
            Decode the ``video`` column as `datasets.Video` (bytes embedded or a path). With `False`
            the column is a plain string reference (path or URL), for sets too large to embed.
    """
    return _flat_features(DEFAULT_COLUMNS, embed_video)


def benchmark_features(embed_video: bool = True) -> Any:
    """`datasets.Features` of SafeVidBench rows (`BENCHMARK_COLUMNS`).

    Args:
        embed_video (`bool`, defaults to `True`):
            As in `default_features`: `datasets.Video`, or a plain string reference with `False`.
    """
    return _flat_features(BENCHMARK_COLUMNS, embed_video)


def conversational_features(embed_video: bool = True) -> Any:
    """`datasets.Features` of the ``conversational`` config (TRL preference format)."""
    from datasets import Features, List, Value

    flat = default_features(embed_video)
    part = {"type": Value("string"), "text": Value("string")}
    message = {"role": Value("string"), "content": List(part)}
    return Features(
        {
            "video": flat["video"],
            "prompt": List(message),
            "chosen": List(message),
            "rejected": List(message),
            **{name: flat[name] for name in CONVERSATIONAL_METADATA},
        }
    )


def to_conversational(row: dict[str, Any]) -> dict[str, Any]:
    """Turn one ``default`` row into its ``conversational`` form.

    The user turn is ``[{"type": "video"}, {"type": "text", "text": prompt}]``: the video comes
    first, as the families' chat templates expect, and the frames come from the ``video`` column.
    """

    def reply(text: str) -> list[dict[str, Any]]:
        return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]

    return {
        "video": row["video"],
        "prompt": [
            {
                "role": "user",
                "content": [{"type": "video", "text": None}, {"type": "text", "text": row["prompt"]}],
            }
        ],
        "chosen": reply(row["chosen"]),
        "rejected": reply(row["rejected"]),
        **{name: row[name] for name in CONVERSATIONAL_METADATA},
    }
