"""Preparing video preference rows: both configs, frame cache, sampling metadata, length filter, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoProcessor

from safevid.testing.demo_data import build_demo_preference_set
from safevid.testing.tiny_models import build_tiny_model
from safevid.training import (
    VideoDPOConfig,
    VideoDPOTrainer,
    load_preference_dataset,
    prepare_preference_dataset,
)
from safevid.training import data as data_module
from safevid.training.collator import VideoPreferenceCollator
from safevid.video import api as video_api
from safevid.video import sample_video


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    return build_demo_preference_set(tmp_path_factory.mktemp("demo-set"), num_rows=3, long_row=True)


@pytest.fixture(scope="module")
def qwen25():
    return AutoProcessor.from_pretrained(build_tiny_model("qwen2_5_vl"))


def _args(tmp_path, **overrides) -> VideoDPOConfig:
    settings = {"output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "use_cpu": True}
    return VideoDPOConfig(**{"bf16": False, "report_to": [], **settings, **overrides})


def test_both_configs_give_the_same_rows_and_the_cached_frames(demo_set, qwen25, tmp_path):
    args = _args(tmp_path, max_length=None)
    flat, _ = prepare_preference_dataset(load_preference_dataset(demo_set, "default"), qwen25, args)
    chat, _ = prepare_preference_dataset(load_preference_dataset(demo_set, "conversational"), qwen25, args)
    for column in ("prompt_ids", "chosen_ids", "rejected_ids", "frame_key", "num_vision_tokens"):
        assert flat[column] == chat[column]
    # The stored frames are exactly what the stored sampling decodes.
    raw = load_preference_dataset(demo_set, "default").cast_column("video", _undecoded())[0]
    expected = sample_video(
        raw["video"], data_module.VideoSampling.from_dict(json.loads(raw["sampling"]))
    ).frames
    stored = data_module.CachedVideo.from_row(flat[0], data_module.frame_store_for(args)).frames
    assert torch.equal(stored, expected)
    assert expected.shape[0] == 4


def test_frames_are_decoded_once_then_read_from_the_cache(demo_set, qwen25, tmp_path, monkeypatch):
    args = _args(tmp_path, max_length=None)
    dataset = load_preference_dataset(demo_set, "default")
    first, _ = prepare_preference_dataset(dataset, qwen25, args)

    def no_decoding(*_, **__):
        raise AssertionError("decoded again")

    monkeypatch.setattr(
        video_api, "sample_video", no_decoding
    )  # the frame store's one writer decodes through it
    again, _ = prepare_preference_dataset(dataset, qwen25, args)
    assert again.cache_files == first.cache_files
    assert again["frame_key"] == first["frame_key"]


def test_qwen25_gets_the_sampled_fps_and_both_halves_share_the_pixels(demo_set, qwen25, tmp_path):
    prepared, _ = prepare_preference_dataset(
        load_preference_dataset(demo_set, "default"), qwen25, _args(tmp_path)
    )
    store = data_module.frame_store_for(_args(tmp_path))
    batch = VideoPreferenceCollator(qwen25, store)(list(prepared.select(range(2))))
    # 4 of 16 source frames at 10 fps: sampled at 2.5 fps, two frames per temporal patch -> 0.8 s, not 2/24.
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([0.8] * 4)
    assert batch["input_ids"].shape[0] == 4
    assert batch["video_grid_thw"].shape == (4, 3)
    half = batch["pixel_values_videos"].shape[0] // 2
    assert torch.equal(batch["pixel_values_videos"][:half], batch["pixel_values_videos"][half:])
    video_id = qwen25.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert torch.equal(batch["mm_token_type_ids"] == 2, batch["input_ids"] == video_id)
    # Completions are marked after the prompt, never over vision tokens.
    assert not (batch["completion_mask"].bool() & (batch["input_ids"] == video_id)).any()


def test_over_long_rows_are_dropped_and_counted_never_truncated(demo_set, qwen25, tmp_path, capsys):
    dataset = load_preference_dataset(demo_set, "default")
    everything, _ = prepare_preference_dataset(dataset, qwen25, _args(tmp_path, max_length=None))
    lengths = sorted(everything["num_tokens"])
    kept, report = prepare_preference_dataset(dataset, qwen25, _args(tmp_path, max_length=lengths[-2]))
    assert len(kept) == 2
    assert report.dropped == {f"longer than max_length={lengths[-2]}": 1}
    assert "dropped 1 (longer than max_length" in capsys.readouterr().out
    assert max(kept["num_tokens"]) <= lengths[-2]
    with pytest.raises(ValueError, match=r"Every row of the train split was dropped.*raise `max_length`"):
        prepare_preference_dataset(dataset, qwen25, _args(tmp_path, max_length=lengths[0] - 1))


def test_sampling_override_changes_the_frames_and_is_reported(demo_set, qwen25, tmp_path):
    args = _args(tmp_path, video_num_frames=2, video_max_pixels=48 * 32)
    prepared, report = prepare_preference_dataset(load_preference_dataset(demo_set, "default"), qwen25, args)
    shapes = prepared["frames_shape"]
    assert {shape[0] for shape in shapes} == {2}
    assert all(h * w <= 48 * 32 for _, _, h, w in shapes)
    assert [json.loads(s)["num_frames"] for s in report.samplings] == [2]


def test_missing_column_names_it(demo_set, qwen25, tmp_path):
    dataset = load_preference_dataset(demo_set, "default").remove_columns("rejected")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['rejected'\]"):
        prepare_preference_dataset(dataset, qwen25, _args(tmp_path))


def test_undecodable_video_fails_naming_the_row_or_is_skipped(demo_set, qwen25, tmp_path):
    dataset = load_preference_dataset(demo_set, "default").cast_column("video", _undecoded())
    broken = dataset.map(
        lambda row: {"video": {"bytes": b"not a video", "path": "x.mp4"}} if row["id"] == "train-0001" else {}
    )
    with pytest.raises(ValueError, match=r"Row id=train-0001: Cannot decode video.*skip_bad_videos"):
        prepare_preference_dataset(broken, qwen25, _args(tmp_path, max_length=None))
    kept, report = prepare_preference_dataset(
        broken, qwen25, _args(tmp_path, max_length=None, skip_bad_videos=True)
    )
    assert len(kept) == 2
    assert report.dropped == {"undecodable video": 1}
    assert "id=train-0001" in report.format()


def test_video_cells_resolve_in_the_dataset_folder_and_absolute_ones_need_allowing(
    demo_set, qwen25, tmp_path
):
    from safevid.video.references import VideoReferences

    dataset = load_preference_dataset(demo_set, "default").cast_column("video", _undecoded())
    folder, private = tmp_path / "set", tmp_path / "private"
    (folder / "clips").mkdir(parents=True)
    private.mkdir()
    cells = []
    for index, row in enumerate(dataset):
        (folder / "clips" / f"{index}.mp4").write_bytes(row["video"]["bytes"])
        (private / f"{index}.mp4").write_bytes(row["video"]["bytes"])
        cells.append(f"clips/{index}.mp4" if index else str(private / "0.mp4"))
    # Without `video_id` the frames are keyed by the resolved file (rows sharing a video_id share one decode).
    paths = dataset.remove_columns(["video", "video_id"]).add_column("video", cells)
    with pytest.raises(ValueError, match=r"Row id=train-0000: video '/.*0.mp4': is an absolute path.*"
                       r"--allowed-local-media-path .*skip_bad_videos"):  # fmt: skip
        prepare_preference_dataset(
            paths, qwen25, _args(tmp_path), references=VideoReferences(dataset_dir=str(folder))
        )
    kept, report = prepare_preference_dataset(
        paths, qwen25, _args(tmp_path, max_length=None, skip_bad_videos=True),
        references=VideoReferences(dataset_dir=str(folder)),
    )  # fmt: skip
    assert len(kept) == 2
    assert report.dropped == {"unresolvable video (local_path_not_allowed)": 1}
    assert "id=train-0000" in report.format()
    allowed = VideoReferences(dataset_dir=str(folder), allowed_local_media_path=(str(private),))
    kept, report = prepare_preference_dataset(
        paths, qwen25, _args(tmp_path / "again", max_length=None), references=allowed
    )
    assert len(kept) == 3
    assert not report.dropped
    # The same frames as the embedded bytes gave.
    embedded, _ = prepare_preference_dataset(dataset, qwen25, _args(tmp_path / "bytes", max_length=None))
    assert kept["frames_shape"] == embedded["frames_shape"]


def test_prompt_without_a_video_part_is_an_error(demo_set, qwen25, tmp_path):
    dataset = load_preference_dataset(demo_set, "conversational")

    def drop_video_part(row):
        row["prompt"][0]["content"] = [
            part for part in row["prompt"][0]["content"] if part["type"] != "video"
        ]
        return row

    with pytest.raises(ValueError, match="has no \\{'type': 'video'\\} content part"):
        prepare_preference_dataset(dataset.map(drop_video_part), qwen25, _args(tmp_path))


def test_models_without_video_support_are_refused_by_name(demo_set, tmp_path):
    text_model = str(build_tiny_model("text"))
    with pytest.raises(
        ValueError, match=rf"Model {text_model}: Unsupported video LMM family: model type 'qwen2'"
    ):
        VideoDPOTrainer(text_model, args=_args(tmp_path), train_dataset=load_preference_dataset(demo_set))
    from transformers import AutoTokenizer

    video_model = str(build_tiny_model("qwen2_vl"))
    tokenizer = AutoTokenizer.from_pretrained(video_model)
    with pytest.raises(ValueError, match="has no video processor"):
        VideoDPOTrainer(
            video_model,
            args=_args(tmp_path),
            processing_class=tokenizer,
            train_dataset=load_preference_dataset(demo_set),
        )


def test_config_refuses_truncation_and_bad_overrides(tmp_path):
    with pytest.raises(ValueError, match="never truncates"):
        _args(tmp_path, truncation_mode="keep_end")
    with pytest.raises(ValueError, match="Invalid video sampling override"):
        _args(tmp_path, video_num_frames=0)


def _undecoded():
    from datasets import Video

    return Video(decode=False)
