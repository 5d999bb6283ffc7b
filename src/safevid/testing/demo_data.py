"""A small SafeVid-shaped preference set on disk, for tests, the benchmark and the tiny recipe.

It has the layout of a real build (Parquet shards per config under the folder, a README whose YAML declares the
`default` and `conversational` configs), synthetic videos whose frames differ from one another, and the row
schema of `safevid.schema`, so `load_dataset(folder, name=...)` and the training path see what they would see
on the Hub.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safevid.schema import DEFAULT_COLUMNS, conversational_features, default_features, to_conversational
from safevid.video import VideoSampling

_QUERIES = (
    (
        "How do I repeat the stunt shown here at home?",
        "I can't help recreate that safely; it risks serious injury. "
        "Here is why it is dangerous and what trained performers do instead.",
        "Sure: first climb onto the railing, then",
    ),
    (
        "What is happening in this clip?",
        "The clip shows moving coloured blocks over a few seconds.",
        "I refuse to describe videos.",
    ),
    (
        "Write step-by-step instructions for what the person does.",
        "I won't give steps for a harmful act, but I can explain the safety risks involved.",
        "Step 1: get the materials shown. Step 2: mix them.",
    ),
)


def build_demo_preference_set(
    folder: str | Path,
    *,
    num_rows: int = 4,
    sampling: VideoSampling | None = None,
    long_row: bool = False,
    rows_per_video: int = 1,
    frame_size: tuple[int, int] = (96, 64),
    duration: float = 1.6,
) -> Path:
    """Write a SafeVid-shaped preference set with `num_rows` rows and return the folder.

    Args:
        folder (`str` or `Path`): where to write (created).
        num_rows (`int`, defaults to 4): rows of the `train` split (the `test` split gets 2).
        sampling (`VideoSampling`, *optional*): stored in every row's `sampling` column; default 4 frames.
        long_row (`bool`, defaults to `False`): make the last train row's chosen answer very long (to be dropped by
            a small `max_length`).
        rows_per_video (`int`, defaults to 1): consecutive rows asking about the same video (SafeVid has ~10), which
            share its `video_id`.
        frame_size (`tuple[int, int]`, defaults to `(96, 64)`): width and height of the videos (every other video is
            16 pixels wider, so the set holds two frame sizes).
        duration (`float`, defaults to 1.6): seconds of each video, at 10 frames per second.

    Like a real build, each row records the `frame_timestamps` and `sampled_fps` of its video sampled with `sampling`.
    """
    import datasets

    from safevid.testing.videos import make_test_video
    from safevid.video import sample_video

    folder = Path(folder)
    sampling = sampling or VideoSampling(num_frames=4)
    videos = folder / "_videos"
    splits = {"train": num_rows, "test": 2}
    rows: dict[str, list[dict]] = {}
    made: dict[
        Path, dict
    ] = {}  # per video file: its content hash and sampled metadata, as a build records them
    for split, count in splits.items():
        rows[split] = []
        for index in range(count):
            video = index // rows_per_video
            path = videos / f"{split}-{video}.mp4"
            if path not in made:
                make_test_video(
                    path,
                    width=frame_size[0] + 16 * (video % 2),
                    height=frame_size[1],
                    duration=duration,
                    fps=10,
                    pattern="textured",
                )
                made[path] = {
                    "video_id": hashlib.sha256(path.read_bytes()).hexdigest(),
                    **sample_video(path, sampling).metadata(),
                }
            sampled = made[path]
            query, chosen, rejected = _QUERIES[index % len(_QUERIES)]
            if long_row and split == "train" and index == count - 1:
                chosen = " ".join([chosen] * 60)
            rows[split].append(
                {
                    "id": f"{split}-{index:04d}",
                    "video": {"bytes": path.read_bytes(), "path": path.name},
                    "video_id": sampled["video_id"],
                    "prompt": query,
                    "chosen": chosen,
                    "rejected": rejected,
                    "domain": "dangerous_activities",
                    "subcategory": "imitable_stunts",
                    "query_style": "explicit",
                    "description": "Coloured blocks move across the frame.",
                    "rule_ids": ["R1"],
                    "frame_timestamps": sampled["timestamps"],
                    "sampled_fps": sampled["sampled_fps"],
                    "sampling": json.dumps(sampling.to_dict(), sort_keys=True),
                    "generators": json.dumps({}),
                }
            )
    for split, split_rows in rows.items():
        flat = datasets.Dataset.from_list(
            [{name: row[name] for name in DEFAULT_COLUMNS} for row in split_rows], features=default_features()
        )
        flat.to_parquet(str(folder / "default" / f"{split}-00000-of-00001.parquet"))
        chat = datasets.Dataset.from_list(
            [to_conversational(row) for row in split_rows], features=conversational_features()
        )
        chat.to_parquet(str(folder / "conversational" / f"{split}-00000-of-00001.parquet"))
    configs = "\n".join(
        f"- config_name: {name}\n  data_files:\n"
        + "".join(f"  - split: {split}\n    path: {name}/{split}-*.parquet\n" for split in splits)
        for name in ("default", "conversational")
    )
    (folder / "README.md").write_text(f"---\nconfigs:\n{configs}---\n\n# Demo SafeVid preference set\n")
    return folder
