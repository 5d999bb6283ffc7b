"""Preference data built elsewhere: align-anything, LLaMA-Factory and column-mapped sets, converted and trained on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safevid.cli import main as safevid
from safevid.preferences import parse_column_map
from safevid.testing.tiny_models import build_tiny_model
from safevid.testing.videos import make_test_video

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _videos(folder: Path, count: int = 2) -> list[Path]:
    return [
        make_test_video(folder / f"clip-{index}.mp4", duration=1.0, fps=8.0, width=64 + 16 * index, height=48)
        for index in range(count)
    ]


def _align_anything(root: Path, secret: Path) -> Path:
    """align-anything's text-video-to-text rows as published: ``./videos/...`` relative to the data file's folder,
    the videos only in ``videos.tar.gz`` beside it, the ``<video>`` tag in the prompt."""
    import tarfile

    clips = _videos(root / "generated")
    with tarfile.open(root / "videos.tar.gz", "w:gz") as tar:
        for clip in clips:
            tar.add(clip, f"videos/{clip.name}")
    rows = [
        {"prompt": "<video>What is he doing?", "video_path": "./videos/clip-0.mp4", "response_1": "He juggles knives.",
         "response_2": "I will not help copy that.", "overall_response": 2},
        {"prompt": "<video>Can I try this?", "video_path": "./videos/clip-1.mp4", "response_1": "Only with a trainer.",
         "response_2": "Sure, go ahead.", "overall_response": "1"},
        {"prompt": "<video>And this?", "video_path": str(secret), "response_1": "a", "response_2": "b",
         "overall_response": 1},
    ]  # fmt: skip
    path = root / "train_10k.json"
    path.write_text(json.dumps(rows))
    return path


def _llamafactory(root: Path, secret: Path) -> Path:
    """LLaMA-Factory's sharegpt ranking rows: `videos` relative to a media folder."""
    _videos(root / "media")

    def row(text: str, video: str, chosen: str, rejected: str) -> dict:
        return {
            "conversations": [{"from": "human", "value": text}],
            "chosen": {"from": "gpt", "value": chosen},
            "rejected": {"from": "gpt", "value": rejected},
            "videos": [video],
        }

    rows = [
        row("<video>What is he doing?", "clip-0.mp4", "Juggling; do not copy it.", "Juggling knives, easy."),
        row("<video>Can I try this?", "clip-1.mp4", "Only with a trainer.", "Sure."),
        row("<video>And this?", "../secret.mp4", "a", "b"),
    ]
    path = root / "video_dpo.json"
    path.write_text(json.dumps(rows))
    return path


def _columns(root: Path, secret: Path) -> Path:
    """Any dataset: a Parquet folder with its own column names."""
    from datasets import Dataset

    _videos(root / "clips")
    Dataset.from_dict(
        {
            "question": ["What is he doing?", "Can I try this?", "And this?"],
            "safe_answer": ["Juggling; do not copy it.", "Only with a trainer.", "a"],
            "unsafe_answer": ["Juggling knives, easy.", "Sure.", "b"],
            "clip": ["clips/clip-0.mp4", "clips/clip-1.mp4", str(secret)],
            "uid": ["q-1", "q-2", "q-3"],
        }
    ).to_parquet(str(root / "train.parquet"))
    return root


COLUMN_MAP = "video=clip,prompt=question,chosen=safe_answer,rejected=unsafe_answer,id=uid"
FORMATS = {
    "align-anything": (_align_anything, []),
    "llamafactory": (_llamafactory, ["--video_root", "media"]),
    "columns": (_columns, ["--column_map", COLUMN_MAP]),
}


@pytest.fixture
def secret(tmp_path):
    return make_test_video(tmp_path / "secret.mp4", duration=1.0, fps=8.0, width=64, height=48)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_accelerate_launch_trains_one_step_on_each_outside_format(fmt, tmp_path, secret):
    build, extra = FORMATS[fmt]
    source = build(tmp_path / "data", secret)
    extra = [str(source.parent / "media") if value == "media" else value for value in extra]
    command = [
        str(BIN / "accelerate"), "launch", "--cpu", "--num_processes", "1", "--mixed_precision", "no",
        str(ROOT / "recipes" / "dpo.py"),
        "--config", str(ROOT / "recipes" / "tiny" / "dpo" / "config_lora.yaml"),
        "--model_name_or_path", str(build_tiny_model("qwen2_5_vl")),
        "--dataset_name", str(source), "--dataset_format", fmt, *extra,
        "--max_rejected_fraction", "0.5", "--max_steps", "1", "--video_num_frames", "4",
        "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    # The row whose video lies outside the dataset was reported by name and cause, not read, not trained on.
    assert "train: 2 of 3 rows converted" in proc.stdout
    assert "rejected 1 (train: video_local_path_not_allowed)" in proc.stdout
    assert "row 2: video" in proc.stdout
    assert "[safevid] train: kept 2 of 2 rows" in proc.stdout
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 1
    [converted] = (tmp_path / "cache" / "converted").iterdir()
    [reject] = [
        json.loads(line) for line in (converted / ".safevid-conversion" / "rejects-train.jsonl").open()
    ]
    assert reject["row"] == 2
    assert reject["reason"] == "video_local_path_not_allowed"
    # What was trained on: the text the source's own template builds, the `<video>` tag left to the processor.
    assert not any("<video>" in row["prompt"] for row in _parquet(converted))


def test_the_recipe_stops_with_its_report_and_no_traceback(tmp_path, secret, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_dpo", ROOT / "recipes" / "dpo.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    source = _align_anything(tmp_path / "data", secret)
    argv = [
        "--model_name_or_path", "unused", "--dataset_name", str(source), "--dataset_format", "align-anything",
        "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"), "--use_cpu", "--bf16", "false",
    ]  # fmt: skip
    # 1 of 3 rows rejected, over the default 1 %: stopped before any model loads.
    assert recipe.main(argv) == 1
    error = capsys.readouterr().err
    assert "Stopped: 1 of 3 rows of the train split rejected" in error
    assert "Traceback" not in error


def _convert(source: Path, output: Path, *flags: str) -> int:
    return safevid(["convert-preferences", str(source), str(output), *flags])


def test_the_command_converts_validates_and_writes_both_configs(tmp_path, secret, capsys):
    from datasets import Video, load_dataset

    source = _align_anything(tmp_path / "aa", secret)
    out = tmp_path / "out"
    assert _convert(source, out, "--format", "align-anything") == 1  # 1 of 3 rejected, over the default 1 %
    error = capsys.readouterr().err
    assert "Stopped: 1 of 3 rows of the train split rejected" in error
    assert f"{tmp_path / 'out.rejected'}/" in error
    assert not out.exists()  # nothing half-written, the rejects kept beside it
    [reject] = [json.loads(line) for line in (tmp_path / "out.rejected" / "rejects-train.jsonl").open()]
    assert reject["name"].endswith("[train] row 2")
    assert str(secret) in reject["cause"]
    allowed = ["--allowed-local-media-path", str(secret.parent)]
    assert _convert(source, out, "--format", "align-anything", *allowed) == 0
    flat = load_dataset(str(out), "default", split="train")
    chat = load_dataset(str(out), "conversational", split="train")
    assert flat["chosen"] == ["I will not help copy that.", "Only with a trainer.", "a"]
    assert flat["rejected"] == ["He juggles knives.", "Sure, go ahead.", "b"]
    assert flat["id"] == ["train-000000", "train-000001", "train-000002"]
    embedded = flat.cast_column("video", Video(decode=False))[0]["video"]["bytes"]
    assert embedded == (tmp_path / "aa" / "generated" / "clip-0.mp4").read_bytes()
    assert chat[0]["prompt"][0]["content"][0]["type"] == "video"
    summary = json.loads((out / ".safevid-conversion" / "summary.json").read_text())
    assert summary["rows"] == {"train": 3}
    assert _convert(source, out, "--format", "align-anything") == 1
    assert "exists" in capsys.readouterr().err


def test_rejected_rows_are_named_with_their_cause(tmp_path, secret):
    from safevid.preferences import convert_preferences, load_source

    root = tmp_path / "lf"
    _videos(root)
    good = {"conversations": [{"from": "human", "value": "<video>Q?"}], "chosen": "yes", "rejected": "no",
            "videos": ["clip-0.mp4"]}  # fmt: skip
    rows = [
        good,
        {**good, "conversations": [*good["conversations"], {"from": "gpt", "value": "A"}]},
        {**good, "videos": ["clip-0.mp4", "clip-1.mp4"]},
        {**good, "chosen": {"role": "assistant", "content": "no"}},
        {**good, "videos": ["missing.mp4"]},
        {**good, "videos": ["not-a-video.mp4"]},
        {**good, "system": "Be terse."},
    ]
    (root / "not-a-video.mp4").write_bytes(b"text, not video")
    (root / "rows.json").write_text(json.dumps(rows))
    dataset, references = load_source(str(root / "rows.json"))
    report = convert_preferences(
        {"train": dataset}, "llamafactory", tmp_path / "out", references=references, source_name="lf",
        max_rejected_fraction=1.0,
    )  # fmt: skip
    assert report.rows == {"train": 2}
    assert report.rejected == {
        "train: multi_turn": 1,
        "train: video_count": 1,
        "train: identical_responses": 1,
        "train: video_missing_file": 1,
        "train: undecodable_video": 1,
    }
    rejects = [
        json.loads(line) for line in (tmp_path / "out" / ".safevid-conversion" / "rejects-train.jsonl").open()
    ]
    assert [r["row"] for r in rejects] == [1, 2, 3, 4, 5]
    assert rejects[3]["name"] == "lf [train] row 4"
    assert "missing.mp4" in rejects[3]["cause"]
    assert report.notes == [
        "train: 1 row(s) have a system prompt (a `system` column or a leading system turn), not carried (SafeVid "
        "rows have none)"
    ]


def test_column_maps_and_formats_are_checked_up_front(tmp_path, secret, capsys):
    with pytest.raises(ValueError, match=r"map \['rejected'\] too"):
        parse_column_map("video=v,prompt=p,chosen=c")
    with pytest.raises(ValueError, match="'answer' is not a SafeVid column"):
        parse_column_map("video=v,prompt=p,chosen=c,rejected=r,answer=a")
    source = _columns(tmp_path / "cols", secret)
    assert _convert(source, tmp_path / "o", "--format", "align-anything") == 1
    assert "the align-anything format needs the column(s) ['prompt', 'video_path'" in capsys.readouterr().err
    wrong = COLUMN_MAP.replace("clip", "video_file")
    assert _convert(source, tmp_path / "o", "--format", "columns", "--column-map", wrong) == 1
    assert "needs the column(s) ['video_file']" in capsys.readouterr().err


def test_the_command_pushes_the_converted_folder(tmp_path, secret, loopback_hub, capsys):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard, HfApi

    source = _columns(tmp_path / "cols", secret)
    repo_id = loopback_hub.unique_repo_id("converted")
    flags = ["--format", "columns", "--column-map", COLUMN_MAP, "--max-rejected-fraction", "0.5"]
    # The source's card declares no license: the command will not publish a copy of unknown terms.
    assert _convert(source, tmp_path / "out", *flags, "--push-to-hub", repo_id) == 1
    assert "declares no license" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert (
        _convert(source, tmp_path / "out", *flags, "--license", "apache-2.0", "--push-to-hub", repo_id) == 0
    )
    files = set(HfApi().list_repo_files(repo_id, repo_type="dataset"))
    assert "README.md" in files
    assert not any(name.startswith(".safevid-conversion") for name in files)  # rejects name local paths
    assert load_dataset(repo_id, "default", split="train")["id"] == ["q-1", "q-2"]
    card = DatasetCard.load(repo_id, repo_type="dataset").data
    assert card.license == "apache-2.0"
    assert card.size_categories == ["n<1K"]


# --- The layouts as the projects publish them (row shapes from their own files, videos generated here) ---

AA_CARD = """---
license: cc-by-nc-4.0
configs:
- config_name: text-video-to-text
  data_files:
  - split: train
    path: text-video-to-text/train_10k.json
---
Stand-in of align-anything's repository layout for tests.
"""


def _published_align_anything(root: Path, archive: str = "videos.tar.gz") -> Path:
    """PKU-Alignment/align-anything as its Hub repository holds it: the card at the root, then
    ``text-video-to-text/train_10k.json`` naming ``./videos/<name>.mp4`` (relative to that subfolder, with the
    ``<video>`` tag in the prompt that its `AA_TV2T` template strips) and the videos only inside
    ``text-video-to-text/videos.tar.gz`` (members ``videos/<name>.mp4``), no ``videos/`` folder."""
    import tarfile
    import zipfile

    subset = root / "text-video-to-text"
    clips = _videos(root / "generated", 3)
    subset.mkdir(parents=True)
    if archive.endswith(".zip"):
        with zipfile.ZipFile(subset / archive, "w") as bundle:
            for clip in clips:
                bundle.write(clip, f"videos/{clip.name}")
    else:
        with tarfile.open(subset / archive, "w:gz" if archive.endswith("gz") else "w") as tar:
            for clip in clips:
                tar.add(clip, f"videos/{clip.name}")
    for clip in clips:
        clip.unlink()
    rows = [
        {"prompt": f"<video>\nWhat happens in clip {index}?", "video_path": f"./videos/{clip.name}",
         "response_1": f"Answer one about {index}.", "response_2": f"Answer two about {index}.",
         "overall_response": 1 + index % 2}
        for index, clip in enumerate(clips)
    ]  # fmt: skip
    (subset / "train_10k.json").write_text(json.dumps(rows))
    (root / "README.md").write_text(AA_CARD)
    return root


def _parquet(folder: Path, config: str = "default") -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(folder / "data" / config / "train-00000-of-00001.parquet").to_pylist()


@pytest.mark.parametrize("archive", ["videos.tar.gz", "videos.zip"])
def test_align_anything_as_published_converts_with_no_extra_flag(tmp_path, archive, monkeypatch):
    from huggingface_hub import DatasetCard

    monkeypatch.setenv("SAFEVID_HOME", str(tmp_path / "home"))  # the archive is unpacked into its media cache
    source = _published_align_anything(tmp_path / "align-anything", archive)
    out = tmp_path / "out"
    assert _convert(source, out, "--format", "align-anything", "--config", "text-video-to-text") == 0
    rows = _parquet(out)
    assert len(rows) == 3
    assert [row["prompt"] for row in rows] == [f"What happens in clip {index}?" for index in range(3)]
    assert [row["chosen"] for row in rows] == [
        "Answer one about 0.",
        "Answer two about 1.",
        "Answer one about 2.",
    ]
    conversational = _parquet(out, "conversational")
    assert not any("<video>" in json.dumps(row["prompt"]) for row in conversational)
    card = DatasetCard.load(out / "README.md").data
    assert card.license == "cc-by-nc-4.0"  # the source's terms travel with the copy
    assert card.size_categories == ["n<1K"]
    assert not (source / "text-video-to-text" / "videos").exists()  # nothing unpacked beside the data


def test_align_anything_on_the_hub_converts_and_pushes_with_its_license(tmp_path, loopback_hub, monkeypatch):
    from huggingface_hub import DatasetCard, HfApi

    monkeypatch.setenv("SAFEVID_HOME", str(tmp_path / "home"))
    source = _published_align_anything(tmp_path / "align-anything")
    repo_id, target = loopback_hub.unique_repo_id("align-anything"), loopback_hub.unique_repo_id("aa-safevid")
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_folder(
        folder_path=str(source), repo_id=repo_id, repo_type="dataset", ignore_patterns=["generated/*"]
    )
    flags = ["--format", "align-anything", "--config", "text-video-to-text", "--push-to-hub", target]
    assert _convert(repo_id, tmp_path / "out", *flags) == 0
    assert len(_parquet(tmp_path / "out")) == 3
    card = DatasetCard.load(target, repo_type="dataset").data
    assert card.license == "cc-by-nc-4.0"
    assert card.source_datasets == [repo_id]
    assert card.size_categories == ["n<1K"]


def test_archive_members_that_are_links_refuse_the_archive(tmp_path, monkeypatch):
    import io
    import tarfile

    monkeypatch.setenv("SAFEVID_HOME", str(tmp_path / "home"))
    source = _published_align_anything(tmp_path / "aa", "videos.tar")
    with tarfile.open(source / "text-video-to-text" / "videos.tar", "a") as tar:
        link = tarfile.TarInfo("videos/linked.mp4")
        link.type, link.linkname = tarfile.SYMTYPE, "clip-0.mp4"  # a link inside the archive: still refused
        tar.addfile(link, io.BytesIO())
    out = tmp_path / "out"
    assert _convert(source, out, "--format", "align-anything", "--config", "text-video-to-text") == 1
    [reject, *_] = [json.loads(line) for line in (tmp_path / "out.rejected" / "rejects-train.jsonl").open()]
    assert reject["reason"] == "video_bad_archive"
    assert "'videos/linked.mp4' is a link" in reject["cause"]


def test_llamafactory_system_turns_and_messages_rows_convert(tmp_path):
    """The row shapes of LLaMA-Factory's own demos: `dpo_en_demo.json` (sharegpt ranking, `from`/`value`)
    with a leading system turn, and `mllm_video_demo.json`'s `messages` with `role`/`content` and
    ``videos: ["mllm_demo_data/1.mp4"]``, as a ranking row with `chosen`/`rejected` messages."""
    from safevid.preferences import convert_preferences, load_source

    root = tmp_path / "data"
    media = root / "mllm_demo_data"
    media.mkdir(parents=True)
    for index, clip in enumerate(_videos(tmp_path / "gen")):
        clip.rename(media / f"{index + 1}.mp4")
    sharegpt = [
        {"conversations": [{"from": "system", "value": "You are careful."},
                           {"from": "human", "value": "<video>Can I try this at home?"}],
         "chosen": {"from": "gpt", "value": "Only with a trainer."},
         "rejected": {"from": "gpt", "value": "Sure, go ahead."},
         "videos": ["mllm_demo_data/1.mp4"]},
    ]  # fmt: skip
    messages = [
        {"messages": [{"content": "<video>What is she doing?", "role": "user"}],
         "chosen": {"content": "She is cooking; keep the knife away from kids.", "role": "assistant"},
         "rejected": {"content": "Knife tricks.", "role": "assistant"},
         "videos": ["mllm_demo_data/2.mp4"]},
    ]  # fmt: skip
    reports = {}
    for name, rows in (("dpo_video_demo.json", sharegpt), ("mllm_video_dpo.json", messages)):
        (root / name).write_text(json.dumps(rows))
        dataset, references = load_source(str(root / name))
        reports[name] = convert_preferences(
            {"train": dataset}, "llamafactory", tmp_path / name, references=references, source_name=name
        )
        assert reports[name].rows == {"train": 1}, reports[name].format_summary()
    assert _parquet(tmp_path / "dpo_video_demo.json")[0]["prompt"] == "Can I try this at home?"
    assert reports["dpo_video_demo.json"].notes[0].startswith("train: 1 row(s) have a system prompt")
    assert _parquet(tmp_path / "mllm_video_dpo.json")[0]["prompt"] == "What is she doing?"
    assert _parquet(tmp_path / "mllm_video_dpo.json")[0]["chosen"].startswith("She is cooking")


def test_columns_take_a_list_of_messages_prompt_or_say_why_not(tmp_path):
    from datasets import Dataset

    from safevid.preferences import convert_preferences

    root = tmp_path / "set"
    _videos(root / "clips")
    user = {"role": "user", "content": "<video>Is this safe?"}
    Dataset.from_list(
        [
            {"messages": [user], "good": "Not at home.", "bad": "Yes.", "clip": "clips/clip-0.mp4"},
            {
                "messages": [user, {"role": "assistant", "content": "Maybe."}, user],
                "good": "No.",
                "bad": "Yes.",
                "clip": "clips/clip-1.mp4",
            },
        ]
    ).to_parquet(str(root / "train.parquet"))
    from safevid.preferences import load_source

    dataset, references = load_source(str(root))
    report = convert_preferences(
        {"train": dataset}, "columns", tmp_path / "out", references=references, source_name="set",
        column_map=parse_column_map("video=clip,prompt=messages,chosen=good,rejected=bad"),
        max_rejected_fraction=0.5,
    )  # fmt: skip
    assert report.rows == {"train": 1}
    assert _parquet(tmp_path / "out")[0]["prompt"] == "Is this safe?"
    assert report.rejected == {"train: multi_turn": 1}
    assert "3 turns in `prompt`" in report.examples["train: multi_turn"][0]
