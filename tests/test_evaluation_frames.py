"""The harness's frames: each benchmark video decoded once per sampling into the frame store, read back by the
other prompts about it and by every later run, prepared in decode workers (encoded for the wire there for an HTTP
model), blanked for the blind baseline, and a video that does not decode failing only its own items.

The model is a recording stand-in (a local engine, or the same behind the loopback OpenAI server): the frames it
was shown are the assertion.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_evaluation_harness import STYLES, SUBCATEGORIES, write_bench

from safevid.evaluation.harness import EvalConfig, generate_answers, load_benchmark, read_jsonl
from safevid.video.frame_store import FrameStore

from helpers import Recorder

GOOD_IDS = sorted(f"{s}-{t}" for s in SUBCATEGORIES for t in STYLES)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("frames-bench")
    return write_bench(tmp / "safevidbench", tmp / "videos", corrupt=True)


@pytest.fixture(scope="module")
def pool():
    """Two decode workers for the module (their start-up, a few seconds, paid once)."""
    from safevid.video.pool import DecodePool

    with DecodePool(2) as pool:
        yield pool


def run(bench: Path, tmp: Path, name: str, backend, pool, **overrides) -> tuple[dict, EvalConfig]:
    config = EvalConfig.from_dict(
        {
            "benchmark": str(bench),
            "model": {"kind": "openai", "model": "recorder"},  # identity only: the backend is given
            "output_dir": str(tmp / name),
            "frames_dir": str(tmp / "frames"),
            "batch_size": 4,
            **overrides,
        }
    )
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    counts = generate_answers(config, load_benchmark(config), backend=backend, pool=pool)
    return counts, config


def test_each_video_is_decoded_once_and_later_runs_decode_nothing(bench, tmp_path, pool):
    first = Recorder()
    counts, config = run(bench, tmp_path, "base", first, pool)
    # 2 good videos, 3 prompts each, plus a video that does not decode: one entry per good video.
    assert (counts["videos_decoded"], counts["videos_from_store"]) == (2, 0)
    assert counts["answered"] == 6
    assert len(FrameStore(config.frames_path).keys()) == 2
    assert sorted(row["id"] for row in read_jsonl(Path(config.output_dir) / "answers.jsonl")) == GOOD_IDS
    assert {tuple(frames.shape) for _, frames in first.seen} == {(2, 3, 48, 64)}  # num_frames 2, 64×48 clips
    # Another model's run, into a fresh folder: every frame from the store, the same frames as the first run's.
    second = Recorder()
    counts, _ = run(bench, tmp_path, "aligned", second, pool)
    assert (counts["videos_decoded"], counts["videos_from_store"]) == (0, 2)
    assert counts["answered"] == 6
    assert len(FrameStore(config.frames_path).keys()) == 2
    shown = {prompt: frames for prompt, frames in first.seen}
    assert all((frames == shown[prompt]).all() for prompt, frames in second.seen)


def test_a_video_that_does_not_decode_fails_only_its_items(bench, tmp_path, pool):
    counts, config = run(bench, tmp_path, "run", Recorder(), pool)
    assert (counts["answered"], counts["failed"]) == (6, 3)
    failures = read_jsonl(Path(config.output_dir) / "generation_failures.jsonl")
    assert sorted(f["id"] for f in failures) == sorted(f"{SUBCATEGORIES[0]}-corrupt-{t}" for t in STYLES)
    assert all(f["error"].startswith("video: ") for f in failures)
    # A rerun retries only those (still failing), and appends nothing.
    counts, _ = run(bench, tmp_path, "run", Recorder(), pool)
    assert counts == {
        "already_answered": 6,
        "answered": 0,
        "failed": 3,
        "videos_decoded": 0,
        "videos_from_store": 0,
    }
    assert len(read_jsonl(Path(config.output_dir) / "answers.jsonl")) == 6


@pytest.mark.parametrize("over_http", [False, True], ids=["local-engine", "http"])
def test_blank_ablation_sends_black_frames_of_the_same_count_size_and_timing(
    bench, tmp_path, pool, over_http
):
    from safevid.backends import make_backend
    from safevid.backends.server import LoopbackServer

    def answer(name: str, **overrides) -> tuple[list, list[dict]]:
        recorder = Recorder()
        if not over_http:
            _, config = run(bench, tmp_path, name, recorder, pool, **overrides)
        else:  # frames encoded in the decode worker, decoded again by the server
            with LoopbackServer(model_name="recorder", backend=recorder) as server:
                spec = {"kind": "openai", "model": "recorder", "base_url": server.base_url, "cache": False}
                backend = make_backend({**spec, "video_input": "video_url"})
                _, config = run(bench, tmp_path, name, backend, pool, model=spec, **overrides)
        lines = read_jsonl(Path(config.output_dir) / "answers.jsonl")
        return [frames for _, frames in recorder.seen], sorted(lines, key=lambda line: line["id"])

    seen, lines = answer("video")
    blank_seen, blank_lines = answer("blank", video_ablation="blank")
    assert len(blank_seen) == len(seen) == 6
    assert {tuple(f.shape) for f in blank_seen} == {tuple(f.shape) for f in seen} == {(2, 3, 48, 64)}
    assert all(int(f.max()) == 0 for f in blank_seen)
    assert all(int(f.max()) > 0 for f in seen)
    assert [line["frame_timestamps"] for line in blank_lines] == [line["frame_timestamps"] for line in lines]
    assert {line["video_ablation"] for line in blank_lines} == {"blank"}
    # The store holds the real frames, once per video: the blind run decoded nothing.
    assert len(FrameStore(tmp_path / "frames").keys()) == 2


def test_frames_dir_defaults_to_the_store_training_uses(monkeypatch, tmp_path):
    from safevid.paths import default_cache_dir

    monkeypatch.setenv("SAFEVID_HOME", str(tmp_path))
    config = EvalConfig.from_dict({"model": {"kind": "openai", "model": "m"}})
    assert config.frames_path == default_cache_dir() / "frames" == tmp_path / "dpo-cache" / "frames"
    assert EvalConfig.from_dict({"model": {"model": "m"}, "frames_dir": "f"}).frames_path == Path("f")
    with pytest.raises(ValueError, match="decode_workers must be >= 1"):
        EvalConfig.from_dict({"model": {"model": "m"}, "decode_workers": 0})


class _ById(Recorder):
    """The recorder, keeping the frames each item (request id) was shown."""

    def _generate(self, requests, hooks) -> None:
        super()._generate(requests, hooks)
        self.by_id = {
            **getattr(self, "by_id", {}),
            **{r.id: f for r, (_, f) in zip(requests, self.seen[-len(requests) :], strict=True)},
        }


def test_a_benchmark_reusing_another_ones_video_ids_never_reads_or_writes_its_frames(tmp_path, pool):
    """The two-benchmark case: a benchmark whose rows carry another's `video_id`s with other videos, evaluated first
    on the same frame store, must not make the second one read its frames (nor read the second one's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from safevid.testing.videos import make_test_video
    from safevid.video import VideoSampling, sample_video

    honest = write_bench(tmp_path / "honest", tmp_path / "videos")
    [data] = (honest / "data").glob("*.parquet")
    table = pq.read_table(data)
    rows = table.to_pylist()
    # Other videos (textured, so no frame equals an honest one) under the honest benchmark's ids.
    others = {
        sub: make_test_video(
            tmp_path / f"other{i}.mp4", duration=1.0, fps=8.0 + i, width=64, height=48, pattern="textured"
        ).read_bytes()
        for i, sub in enumerate(SUBCATEGORIES)
    }
    field = table.schema.field("video")
    crossed = pa.array(
        [{"bytes": others[r["subcategory"]], "path": r["video"]["path"]} for r in rows], field.type
    )
    poisoned = tmp_path / "poisoned"
    (poisoned / "data").mkdir(parents=True)
    pq.write_table(
        table.set_column(table.schema.get_field_index("video"), field, crossed), poisoned / "data" / data.name
    )
    assert (
        pq.read_table(poisoned / "data" / data.name)["video_id"] == table["video_id"]
    )  # same ids, other videos

    sampling = VideoSampling(num_frames=2, max_pixels=4096)
    clip_of = {row["subcategory"]: row["video"]["bytes"] for row in rows}
    honest_frames = {sub: sample_video(clip, sampling).frames for sub, clip in clip_of.items()}
    other_frames = {sub: sample_video(clip, sampling).frames for sub, clip in others.items()}
    assert all(not (honest_frames[sub] == other_frames[sub]).all() for sub in SUBCATEGORIES)
    first, second = _ById(), _ById()
    run(poisoned, tmp_path, "poisoned", first, pool)  # evaluated first, on the shared store
    counts, _ = run(honest, tmp_path, "honest", second, pool)
    assert counts["answered"] == 6
    for sub in SUBCATEGORIES:
        for style in STYLES:
            assert (second.by_id[f"{sub}-{style}"] == honest_frames[sub]).all()
            assert (
                first.by_id[f"{sub}-{style}"] == other_frames[sub]
            ).all()  # each row its own video's frames
