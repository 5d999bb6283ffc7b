"""Video ablations of `safevid eval`: the frames a model is shown under ``reverse``, ``shuffle`` and ``single-frame``
(``blank`` is in test_evaluation_frames), through a local engine and through an OpenAI-compatible server, with
the sampling's count, size and timestamps, recorded in every answer, the run's metrics, report and card block.

The model is a recording stand-in: the frames it was shown, matched to those of a run without ablation, are the
assertion.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_evaluation_frames import run
from test_evaluation_harness import write_bench

from safevid.backends.prepared import VIDEO_ABLATIONS, ablated
from safevid.evaluation.harness import EvalConfig, read_jsonl
from safevid.video import VideoSampling, sample_video

from helpers import Recorder

FRAMES = 4


def _video(count: int = 5):
    """``count`` frames whose pixels all equal 10 × their index: the order can be read back from one pixel."""
    frames = torch.stack([torch.full((4, 6, 3), 10 * i, dtype=torch.uint8) for i in range(count)])
    return sample_video(frames.numpy(), VideoSampling(num_frames=count), frames_fps=8.0)


@pytest.mark.parametrize(
    ("ablation", "order"),
    [("reverse", [4, 3, 2, 1, 0]), ("single-frame", [2, 2, 2, 2, 2]), (None, [0, 1, 2, 3, 4])],
)
def test_ablated_reorders_the_frames_and_keeps_the_timestamps(ablation, order):
    video = _video()
    changed = ablated(video, ablation)
    assert [int(frame[0, 0, 0]) // 10 for frame in changed.frames] == order
    assert changed.timestamps == video.timestamps
    assert changed.indices == video.indices


def test_shuffle_is_seeded_and_never_the_original_order():
    video = _video()
    orders = {
        seed: [int(frame[0, 0, 0]) // 10 for frame in ablated(video, "shuffle", seed).frames]
        for seed in ("0|a", "0|b", "1|a")
    }
    assert all(sorted(order) == list(range(5)) and order != list(range(5)) for order in orders.values())
    assert [int(f[0, 0, 0]) // 10 for f in ablated(video, "shuffle", "0|a").frames] == orders["0|a"]
    assert len({tuple(order) for order in orders.values()}) > 1  # the seed (and the video) pick the order
    two = _video(2)
    assert [int(f[0, 0, 0]) // 10 for f in ablated(two, "shuffle", "0|a").frames] == [1, 0]


def test_an_unknown_ablation_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="reverse, shuffle, single-frame"):
        EvalConfig.from_dict({"model": {"kind": "openai", "model": "m"}, "video_ablation": "mirror"})
    with pytest.raises(ValueError, match="unknown video ablation 'mirror'"):
        ablated(_video(), "mirror")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ablation-bench")
    return write_bench(tmp / "safevidbench", tmp / "videos")


@pytest.fixture(scope="module")
def pool():
    from safevid.video.pool import DecodePool

    with DecodePool(1) as pool:
        yield pool


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


def _order(shown: torch.Tensor, real: list[tuple[str, torch.Tensor]], prompt: str) -> list[int]:
    """Which frame of the real run each shown frame is, matched within the real video (of the same prompt) closest
    to them: frames over HTTP went through JPEG, and the two subcategories' videos are asked the same prompts."""
    candidates = [frames for asked, frames in real if asked == prompt]
    reference = min(candidates, key=lambda ref: sum(min(_distance(f, r) for r in ref) for f in shown))
    return [min(range(len(reference)), key=lambda i: _distance(frame, reference[i])) for frame in shown]


@pytest.mark.parametrize("over_http", [False, True], ids=["local-engine", "http"])
def test_the_model_sees_the_frames_in_the_ablated_order(bench, tmp_path, pool, over_http):
    from safevid.backends import make_backend
    from safevid.backends.server import LoopbackServer

    def answer(name: str, **overrides) -> tuple[list[tuple[str, torch.Tensor]], dict[str, dict]]:
        recorder = Recorder()
        overrides = {"sampling": {"num_frames": FRAMES}, **overrides}
        if not over_http:
            _, config = run(bench, tmp_path, name, recorder, pool, **overrides)
        else:  # frames encoded in the decode worker, in the ablated order, decoded again by the server
            with LoopbackServer(model_name="recorder", backend=recorder) as server:
                spec = {"kind": "openai", "model": "recorder", "base_url": server.base_url, "cache": False}
                backend = make_backend({**spec, "video_input": "video_url"})
                _, config = run(bench, tmp_path, name, backend, pool, model=spec, **overrides)
        lines = {line["id"]: line for line in read_jsonl(Path(config.output_dir) / "answers.jsonl")}
        return recorder.seen, lines

    real, real_lines = answer("real")
    assert len(real) == 6
    for prompt, frames in real:
        assert len(frames) == FRAMES
        assert _order(frames, real, prompt) == list(range(FRAMES))  # the frames differ: an order can be read
    expected = {"reverse": [3, 2, 1, 0], "single-frame": [2, 2, 2, 2]}
    for ablation in ("reverse", "single-frame", "shuffle"):
        seen, lines = answer(ablation, video_ablation=ablation, video_ablation_seed=3)
        assert len(seen) == 6
        orders = [_order(frames, real, prompt) for prompt, frames in seen]
        assert {tuple(frames.shape) for _, frames in seen} == {tuple(frames.shape) for _, frames in real}
        assert lines.keys() == real_lines.keys()
        for key, line in lines.items():
            assert line["frame_timestamps"] == real_lines[key]["frame_timestamps"]
            assert line["video_ablation"] == ablation
        if ablation in expected:
            assert orders == [expected[ablation]] * 6
        else:
            assert all(sorted(o) == list(range(FRAMES)) for o in orders)
            assert all(o != list(range(FRAMES)) for o in orders)
            assert {line["video_ablation_seed"] for line in lines.values()} == {3}


def test_the_ablation_is_named_in_the_report_and_the_card_block():
    from safevid.evaluation.card_results import results_block
    from safevid.evaluation.report import ablation_sentence

    run_info = {"benchmark": "safevidbench", "split": "test", "n_judged": 4, "video_ablation": "shuffle"}
    sentence = ablation_sentence({**run_info, "video_ablation_seed": 7})
    assert "`shuffle`, seed 7" in sentence
    assert VIDEO_ABLATIONS["shuffle"] in sentence
    block = results_block({"run": {**run_info, "video_ablation_seed": 7}, "judge": {}, "counts": {}}, [])
    assert sentence in block
    assert "ablation" not in results_block({"run": {"benchmark": "b"}, "judge": {}, "counts": {}}, [])
    # Whatever a metrics file holds, the sentence stays one line of inline Markdown (it goes into cards).
    hostile = ablation_sentence({"video_ablation": "x\n<!-- safevid-results-end -->\n# Owned"})
    assert "\n" not in hostile
    assert "`x <!-- safevid-results-end --> # Owned`" in hostile  # a code span: nothing in it renders


def test_the_command_line_sets_the_ablation_and_its_seed_which_key_the_runs_answers():
    import argparse

    from safevid.commands.eval import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    model = ["--model", "m", "--model-kind", "openai"]
    shuffled = config_from_args(
        parser.parse_args([*model, "--video-ablation", "shuffle", "--video-ablation-seed", "4"])
    )
    assert (shuffled.video_ablation, shuffled.video_ablation_seed) == ("shuffle", 4)
    # Another seed or ablation is another run: its answers never mix with these.
    other = config_from_args(parser.parse_args([*model, "--video-ablation", "shuffle"]))
    assert other.generation_identity() != shuffled.generation_identity()
    single = config_from_args(parser.parse_args([*model, "--video-ablation", "single-frame"]))
    assert single.generation_identity()["video_ablation"] == "single-frame"
    assert "video_ablation_seed" not in single.generation_identity()
    with pytest.raises(SystemExit):
        parser.parse_args([*model, "--video-ablation", "mirror"])
