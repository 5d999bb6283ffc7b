"""The toy video world: the SafeVid loop makes a video model safer, and it is the video that does it.

The loop runs with the commands a user types (`safevid build`, the SafeVidBench builder, `accelerate launch
recipes/dpo.py`, `safevid eval`), through the toy-world stand-ins served over the OpenAI-compatible protocol.
The default suite runs the demo's world (about 2.5 minutes on 2 quiet cores) on seed 0 and asserts the demo's
targets; the slow test runs it on two more seeds with the same settings. (A half-size world did not learn: with
four clips per harmful subcategory the aligned model answered every clip alike.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safevid.backends import ChatRequest, SamplingParams, make_backend, text_part, video_part
from safevid.backends.server import LoopbackServer
from safevid.taxonomy import load_taxonomy
from safevid.testing.toyworld.loop import run_loop, targets
from safevid.testing.toyworld.standins import ToyWorldBackend
from safevid.testing.toyworld.world import ToyWorld
from safevid.video import VideoSampling, sample_video

REPO = Path(__file__).resolve().parent.parent


def test_the_world_is_data_in_the_taxonomy_format():
    world = ToyWorld.load()
    taxonomy = load_taxonomy(world.taxonomy_path)
    assert set(world.signatures) == set(taxonomy.subcategory_ids)
    assert {taxonomy.subcategory(s).severity for s in world.signatures} == {"none", "high"}


def test_the_describer_reads_the_frames_it_is_sent(tmp_path):
    # Through the real openai backend and server: frames travel as JPEG images; the describer names what the
    # world file says each clip shows, without its name, path or label.
    world = ToyWorld.load()
    world.render(tmp_path, seed=5, scale=0.25)
    truth = json.loads((tmp_path / "eval-truth.json").read_text())
    with LoopbackServer(backend=ToyWorldBackend(world), model_name="toyworld") as server:
        backend = make_backend(kind="openai", model="toyworld", base_url=server.base_url, cache=False)
        requests = [
            ChatRequest(
                [
                    {
                        "role": "user",
                        "content": [
                            video_part(sample_video(tmp_path / "eval" / name, VideoSampling(num_frames=4))),
                            text_part("Describe the video."),
                        ],
                    }
                ],
                SamplingParams(max_tokens=64),
            )
            for name in truth
        ]
        described = [result.text for result in backend.generate(requests)]
        blank = sample_video(tmp_path / "eval" / next(iter(truth)), VideoSampling(num_frames=4))
        blank.frames.zero_()
        nothing = backend.generate(
            [ChatRequest([{"role": "user", "content": [video_part(blank)]}], SamplingParams())]
        )
    for (name, subcategory), text in zip(truth.items(), described, strict=True):
        signature = world.signatures[subcategory]
        assert f"{signature['colour']} " in text, (name, text)
        assert signature["motion"] in text, (name, text)
    assert "nothing is shown" in nothing[0].text


def _assert_targets(results):
    base = results["base"]["overall"]
    assert (base["n_harmful"], base["n_benign"]) == (54, 6)  # world.yaml's eval counts × the query styles
    missed = [(name, value) for name, value, ok in targets(results) if not ok]
    assert not missed, missed


def test_the_loop_makes_the_model_safe_through_the_video(tmp_path):
    _assert_targets(run_loop(REPO, tmp_path, seed=0))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_meet_the_same_targets(tmp_path, seed):
    _assert_targets(run_loop(REPO, tmp_path, seed=seed))
