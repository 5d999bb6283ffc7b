"""The frame store: one decode and one entry per (video, sampling), reuse, damaged entries, the build's timestamps."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoProcessor

from safevid.testing.demo_data import build_demo_preference_set
from safevid.testing.tiny_models import build_tiny_model
from safevid.training import VideoDPOConfig, load_preference_dataset, prepare_preference_dataset
from safevid.training.collator import VideoPreferenceCollator
from safevid.training.data import frame_store_for
from safevid.video import api as video_api
from safevid.video.frame_store import FrameStore

ROWS, ROWS_PER_VIDEO = 6, 3


@pytest.fixture(scope="module")
def shared_set(tmp_path_factory):
    """6 rows about 2 videos, 3 rows each, as SafeVid has ~10 pairs per video."""
    return build_demo_preference_set(
        tmp_path_factory.mktemp("shared-set"), num_rows=ROWS, rows_per_video=ROWS_PER_VIDEO
    )


@pytest.fixture(scope="module")
def qwen25():
    return AutoProcessor.from_pretrained(build_tiny_model("qwen2_5_vl"))


@pytest.fixture
def decodes(monkeypatch):
    """Every call of the preparation's decoder, recorded (the real decoder still runs)."""
    calls: list[object] = []
    real = video_api.sample_video

    def spy(source, sampling=None, **kwargs):
        calls.append(source)
        return real(source, sampling, **kwargs)

    monkeypatch.setattr(video_api, "sample_video", spy)  # the frame store's one writer decodes through it
    return calls


def _args(tmp_path, **overrides) -> VideoDPOConfig:
    settings = {"output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "use_cpu": True}
    return VideoDPOConfig(**{"bf16": False, "report_to": [], "max_length": None, **settings, **overrides})


def test_rows_sharing_a_video_decode_it_once_and_share_one_entry(shared_set, qwen25, tmp_path, decodes):
    args = _args(tmp_path)
    prepared, report = prepare_preference_dataset(load_preference_dataset(shared_set), qwen25, args)
    assert len(prepared) == ROWS
    assert len(decodes) == ROWS // ROWS_PER_VIDEO
    store = frame_store_for(args)
    assert len(store.keys()) == ROWS // ROWS_PER_VIDEO
    assert sorted(set(prepared["frame_key"])) == store.keys()
    assert (report.videos, report.decoded) == (2, 2)
    assert "2 distinct video(s) for 6 rows; 2 decoded now, 0 read" in report.format()
    # The prepared rows hold keys, not frames: no binary column, a few bytes per row.
    assert "frames" not in prepared.column_names
    # Rows of one video give the model identical pixels; rows of the two videos differ.
    batch = VideoPreferenceCollator(qwen25, store)(list(prepared.select([0, 1, 3])))
    sizes = batch["video_grid_thw"][:3].prod(dim=-1).tolist()  # patches per row, first (chosen) half
    first, second, third = batch["pixel_values_videos"][: sum(sizes)].split(sizes)
    assert torch.equal(first, second)
    assert first.shape != third.shape or not torch.equal(first, third)


def test_a_second_run_reuses_the_store_without_decoding(shared_set, qwen25, tmp_path, decodes):
    args = _args(tmp_path)
    flat, _ = prepare_preference_dataset(load_preference_dataset(shared_set, "default"), qwen25, args)
    assert len(decodes) == 2
    # Another config of the same rows is another dataset (new prepared rows) but the same videos: no decoding.
    chat, report = prepare_preference_dataset(
        load_preference_dataset(shared_set, "conversational"), qwen25, args
    )
    assert len(decodes) == 2
    assert (report.videos, report.decoded) == (2, 0)
    assert chat["frame_key"] == flat["frame_key"]
    assert chat["prompt_ids"] == flat["prompt_ids"]
    assert len(list((tmp_path / "cache").glob("rows-*.arrow"))) == 2


def test_a_truncated_entry_is_detected_and_decoded_again(shared_set, qwen25, tmp_path, decodes):
    args = _args(tmp_path)
    dataset = load_preference_dataset(shared_set)
    prepared, _ = prepare_preference_dataset(dataset, qwen25, args)
    store = frame_store_for(args)
    key = prepared[0]["frame_key"]
    frames_path = store.paths(key)[0]
    intact = frames_path.read_bytes()
    frames_path.write_bytes(intact[: len(intact) // 2])  # a torn write, a partial copy
    assert not store.has(key)
    collator = VideoPreferenceCollator(qwen25, store)
    with pytest.raises(
        ValueError, match=rf"{key}\.npy is missing or incomplete\. Rerun the data preparation"
    ):
        collator(list(prepared.select([0])))
    decodes.clear()
    again, report = prepare_preference_dataset(dataset, qwen25, args)
    assert len(decodes) == 1  # only the damaged entry
    assert report.decoded == 1
    assert frames_path.read_bytes() == intact
    assert collator(list(again.select([0])))["pixel_values_videos"].numel() > 0


def _metadata(frames) -> dict:
    """`SampledVideo.metadata()` fields that describe ``frames``' array."""
    count, _, height, width = frames.shape
    return {"num_frames": count, "frame_height": height, "frame_width": width, "timestamps": [0.0] * count}


def test_store_writes_are_atomic_and_check_what_they_store(tmp_path):
    store = FrameStore(tmp_path / "frames")
    frames = torch.randint(0, 255, (2, 3, 8, 10), dtype=torch.uint8)
    store.put("abcd1234", frames, _metadata(frames))
    loaded, metadata = store.load("abcd1234")
    assert torch.equal(torch.from_numpy(loaded), frames)
    assert metadata == _metadata(frames)
    assert [p.name for p in store.paths("abcd1234")[0].parent.iterdir() if p.suffix == ".tmp"] == []
    # The JSON is the commit mark: without it (a writer killed between the two renames) there is no entry.
    store.paths("abcd1234")[1].unlink()
    assert not store.has("abcd1234")
    with pytest.raises(ValueError, match="uint8 frames"):
        store.put("abcd5678", frames.float(), _metadata(frames))
    # Metadata that does not describe the array is refused on write, and an entry whose array and metadata
    # disagree on disk (a copy from elsewhere, a hand edit) reads as missing: decoded again, never served.
    with pytest.raises(
        ValueError, match=r"the frames are \[2, 3, 8, 10\] but the metadata describes \[3, 3, 8, 10\]"
    ):
        store.put("abcd5678", frames, _metadata(torch.zeros(3, 3, 8, 10)))
    store.put("abcd1234", frames, _metadata(frames))
    record = json.loads(store.paths("abcd1234")[1].read_text())
    record["metadata"]["num_frames"] = 3
    store.paths("abcd1234")[1].write_text(json.dumps(record))
    assert not store.has("abcd1234")
    with pytest.raises(ValueError, match="Invalid frame store key"):
        store.paths("../escape")


def _with_timestamps(dataset, edit):
    """`dataset` with the `frame_timestamps` of row 1 replaced by `edit(timestamps)`."""
    return dataset.map(
        lambda row, index: {"frame_timestamps": edit(row["frame_timestamps"])} if index == 1 else {},
        with_indices=True,
    )


def test_frame_timestamps_that_differ_from_the_build_are_counted_and_warned_or_dropped(
    shared_set, qwen25, tmp_path
):
    dataset = load_preference_dataset(shared_set)
    assert len(dataset[0]["frame_timestamps"]) == 4  # the demo set records them, as a build does
    _, report = prepare_preference_dataset(dataset, qwen25, _args(tmp_path))
    assert not report.warned
    assert not report.dropped
    assert (
        "frame timestamps: 6 row(s) compared with the build's `frame_timestamps`, 0 differ" in report.format()
    )

    shifted = _with_timestamps(dataset, lambda ts: [ts[0], ts[1] + 0.3, *ts[2:]])  # 3 source frames at 10 fps
    kept, report = prepare_preference_dataset(shifted, qwen25, _args(tmp_path))
    assert len(kept) == ROWS
    assert report.warned == {"frame timestamps differ from the build": 1}
    text = report.format()
    assert "warning: kept 1 (frame timestamps differ from the build), e.g. id=train-0001: frame 1 at" in text
    assert "(tolerance 0.050 s)" in text

    kept, report = prepare_preference_dataset(
        shifted, qwen25, _args(tmp_path, frame_timestamps_mismatch="drop")
    )
    assert len(kept) == ROWS - 1
    assert "train-0001" not in kept["row_name"]
    assert report.dropped == {"frame timestamps differ from the build": 1}

    # Within half a source frame is the same frame; one timestamp fewer is another reason.
    nudged = _with_timestamps(dataset, lambda ts: [t + 0.04 for t in ts])
    assert not prepare_preference_dataset(nudged, qwen25, _args(tmp_path))[1].warned
    shorter = _with_timestamps(dataset, lambda ts: ts[:-1])
    _, report = prepare_preference_dataset(shorter, qwen25, _args(tmp_path))
    assert report.warned == {"frame count differs from the build": 1}
    assert "4 sampled, 3 in `frame_timestamps`" in report.format()


def test_frame_timestamps_are_not_compared_when_the_run_samples_differently(shared_set, qwen25, tmp_path):
    shifted = _with_timestamps(load_preference_dataset(shared_set), lambda ts: [t + 0.3 for t in ts])
    _, report = prepare_preference_dataset(shifted, qwen25, _args(tmp_path, video_num_frames=2))
    assert not report.warned
    assert "frame timestamps of 6 row(s) not compared with the build's" in report.format()
    assert [json.loads(s)["num_frames"] for s in report.samplings] == [2]
    with pytest.raises(ValueError, match="frame_timestamps_mismatch='fail'"):
        _args(tmp_path, frame_timestamps_mismatch="fail")


def test_rows_without_a_video_id_are_keyed_by_the_video_bytes(shared_set, qwen25, tmp_path, decodes):
    dataset = load_preference_dataset(shared_set)
    with_ids, _ = prepare_preference_dataset(dataset, qwen25, _args(tmp_path))
    decodes.clear()
    without, report = prepare_preference_dataset(dataset.remove_columns("video_id"), qwen25, _args(tmp_path))
    # The build's `video_id` is the SHA-256 of the file: both name the same entries, so nothing is decoded.
    assert without["frame_key"] == with_ids["frame_key"]
    assert decodes == []
    assert report.videos == 2


def test_ids_that_are_not_content_hashes_never_key_the_shared_store(shared_set, qwen25, tmp_path, decodes):
    from safevid.video.frame_store import is_content_id

    assert is_content_id("a" * 64)
    assert not any(is_content_id(video_id) for video_id in ("vid_001", "A" * 64, None))
    dataset = load_preference_dataset(shared_set)
    with_ids, _ = prepare_preference_dataset(dataset, qwen25, _args(tmp_path))
    # Another dataset's ids (`vid_001`) are unique only there: the rows are keyed by their videos' bytes instead.
    local_ids = [f"vid_{i:03d}" for i, _ in enumerate(dataset["video_id"])]
    renamed = dataset.remove_columns("video_id").add_column("video_id", local_ids)
    decodes.clear()
    keyed, _ = prepare_preference_dataset(renamed, qwen25, _args(tmp_path))
    assert keyed["frame_key"] == with_ids["frame_key"]
    assert decodes == []


def test_one_format_training_and_the_build_or_evaluation_read_each_others_entries(
    shared_set, qwen25, tmp_path, decodes
):
    """One writer (`stored_video`) and one format for training, ingest, describe and evaluation: entries written by
    either path are read by the other without decoding; entries in training's old format are decoded again."""
    import hashlib
    import shutil

    from safevid.backends.prepared import prepare_video
    from safevid.video import VideoSampling
    from safevid.video.frame_store import stored_video

    dataset = load_preference_dataset(shared_set)
    args = _args(tmp_path)
    store = frame_store_for(args)
    files = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in shared_set.rglob("*.mp4")}
    videos = sorted(
        {(row["video_id"], row["sampling"]) for row in dataset.select_columns(["video_id", "sampling"])}
    )
    videos = [(video_id, VideoSampling.from_dict(json.loads(s)).to_dict()) for video_id, s in videos]
    assert len(videos) == ROWS // ROWS_PER_VIDEO
    assert {video_id for video_id, _ in videos} <= set(files)

    # Training writes; the build's and the harness's reader (`stored_video`, in `prepare_video`) decodes nothing.
    prepared, _ = prepare_preference_dataset(dataset, qwen25, args)
    for video_id, sampling in videos:
        _, decoded = stored_video(store.root, video_id, files[video_id], sampling)
        assert not decoded
        assert prepare_video(store.root, video_id, files[video_id], sampling, None).decoded is False
    entries = store.keys()
    trained = {key: store.load(key)[0].copy() for key in entries}

    # The build or the harness writes (`prepare_video`, as ingest, describe and evaluation do); training reads.
    shutil.rmtree(store.root)
    for video_id, sampling in videos:
        assert prepare_video(store.root, video_id, files[video_id], sampling, None).decoded
    decodes.clear()
    again, report = prepare_preference_dataset(dataset, qwen25, args)
    assert decodes == []
    assert report.decoded == 0
    assert again["frame_key"] == prepared["frame_key"]
    assert all((store.load(key)[0] == frames).all() for key, frames in trained.items())
    assert VideoPreferenceCollator(qwen25, store)(list(again.select([0])))["pixel_values_videos"].numel() > 0

    # An entry in training's old format ({"sampled", "transformers"}) is decoded again by either reader, never a
    # KeyError.
    key = prepared[0]["frame_key"]
    record_path = store.paths(key)[1]
    record = json.loads(record_path.read_text())
    old = {k: v for k, v in record.items() if k != "format"}
    old["metadata"] = {"sampled": record["metadata"], "transformers": {"fps": 10.0}}
    record_path.write_text(json.dumps(old))
    decodes.clear()
    _, report = prepare_preference_dataset(dataset, qwen25, args)
    assert (len(decodes), report.decoded) == (1, 1)
    record_path.write_text(json.dumps(old))
    assert (
        sum(stored_video(store.root, v, files[v], s)[1] for v, s in videos) == 1
    )  # the old entry, decoded again
