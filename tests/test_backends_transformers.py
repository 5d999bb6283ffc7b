"""transformers local backend on tiny real architectures, the loopback server serving one, vLLM request building."""

from __future__ import annotations

import importlib.util

import pytest

from safevid.backends import (
    ChatRequest,
    SamplingParams,
    StructuredOutput,
    make_backend,
    text_part,
    video_part,
)
from safevid.backends.media import frames_as_video_url
from safevid.backends.server import LoopbackServer


@pytest.fixture(scope="module")
def tiny_vlm():
    from safevid.testing.tiny_models import build_tiny_model

    return build_tiny_model("qwen2_vl")


@pytest.fixture(scope="module")
def vlm_backend(tiny_vlm):
    backend = make_backend(kind="transformers", model=str(tiny_vlm), cache=False, device="cpu")
    backend.load()
    return backend


def _video_request(video, **sampling) -> ChatRequest:
    return ChatRequest(
        [{"role": "user", "content": [video_part(video), text_part("Describe the video.")]}],
        SamplingParams(max_tokens=5, **sampling),
    )


def test_video_request_returns_text_and_top_logprobs(vlm_backend, sampled_video):
    batch = vlm_backend.generate(
        [_video_request(sampled_video, top_logprobs=3), _video_request(sampled_video)]
    )
    first, second = batch
    assert first.ok, first.error
    assert second.ok, second.error
    choice = first.choices[0]
    assert isinstance(choice.text, str)
    assert choice.finish_reason in ("stop", "length")
    assert 1 <= len(choice.logprobs) <= 5
    for token in choice.logprobs:
        assert len(token.top) == 3
        assert [lp for _, lp in token.top] == sorted((lp for _, lp in token.top), reverse=True)
        assert token.logprob <= token.top[0][1] + 1e-6
        assert token.logprob < 0
    # Greedy: the chosen token is the most likely one, and text is what the tokens spell.
    assert all(t.token == t.top[0][0] for t in choice.logprobs)
    assert choice.text == second.choices[0].text
    assert second.choices[0].logprobs is None
    # The video's frames reached the model: its prompt is far longer than the text alone.
    assert first.usage.prompt_tokens > 20
    assert first.usage.completion_tokens >= 1


def test_text_model_sampling_n_and_bad_requests(sampled_video):
    from safevid.testing.tiny_models import build_tiny_model

    backend = make_backend(
        kind="transformers", model=str(build_tiny_model("text")), cache=False, device="cpu"
    )
    text = ChatRequest(
        [{"role": "user", "content": "Hello"}], SamplingParams(max_tokens=4, n=3, temperature=1.0, seed=0)
    )
    batch = backend.generate([text, _video_request(sampled_video)])
    assert batch[0].ok
    assert len(batch[0].choices) == 3
    assert batch[1].error.kind == "invalid_request"
    assert "text-only" in batch[1].error.message
    assert batch.summary.failed_by_reason == {"invalid_request": 1}


def test_loopback_server_serves_a_tiny_vlm_to_the_openai_client(tiny_vlm, sampled_video, tmp_path):
    import openai

    with LoopbackServer(tiny_vlm, backend_options={"device": "cpu"}) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        completion = client.chat.completions.create(
            model=server.model_name,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "video_url", "video_url": {"url": frames_as_video_url(sampled_video)}},
                        {"type": "text", "text": "What happens?"},
                    ],
                }
            ],
            max_tokens=4,
            temperature=0,
            logprobs=True,
            top_logprobs=2,
        )
        choice = completion.choices[0]
        assert isinstance(choice.message.content, str)
        assert 1 <= len(choice.logprobs.content) <= 4
        assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)
        assert completion.usage.prompt_tokens > 20

        # The safevid HTTP backend through the same server: frames as image parts, a schema the
        # random model cannot meet, unconstrained -> a recorded parse failure, not an empty answer.
        backend = make_backend(
            kind="openai",
            model=server.model_name,
            base_url=server.base_url,
            cache_dir=str(tmp_path),
            structured_outputs="none",
        )
        request = ChatRequest(
            [{"role": "user", "content": [video_part(sampled_video), text_part("Score it.")]}],
            SamplingParams(max_tokens=3),
            structured=StructuredOutput(json_schema={"type": "object", "required": ["score"]}),
        )
        result = backend.generate([request], progress=False)[0]
        assert result.error is not None
        assert result.error.kind == "parse"
        assert server.stats.completed == 2


def test_vllm_request_building(tiny_vlm, sampled_video):
    backend = make_backend(kind="vllm", model=str(tiny_vlm), tensor_parallel_size=2, max_model_len=4096)
    request = _video_request(sampled_video, top_logprobs=5, seed=7)
    request.structured = StructuredOutput(choice=("safe", "unsafe"))
    call = backend.build_call(request)
    assert call.prompt.count("<|video_pad|>") == 1
    assert "Describe the video." in call.prompt
    assert call.prompt.rstrip().endswith("assistant")
    ((frames, metadata),) = call.multi_modal_data["video"]
    assert frames.shape == (4, 48, 64, 3)
    assert str(frames.dtype) == "uint8"
    assert metadata["fps"] == pytest.approx(sampled_video.sampled_fps)
    assert metadata["total_num_frames"] == 4
    assert metadata["frames_indices"] == [0, 1, 2, 3]
    assert call.mm_processor_kwargs == {"do_sample_frames": False}
    assert call.sampling_kwargs == {
        "n": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 5,
        "seed": 7,
        "stop": [],
        "logprobs": 5,
    }
    assert call.structured_outputs == {"choice": ["safe", "unsafe"]}
    assert call.prompt_dict().keys() == {"prompt", "multi_modal_data", "mm_processor_kwargs"}
    engine = backend.engine_kwargs()
    assert engine["tensor_parallel_size"] == 2
    assert engine["max_model_len"] == 4096
    assert engine["trust_remote_code"] is False


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_missing_is_a_clear_error(tiny_vlm):
    backend = make_backend(kind="vllm", model=str(tiny_vlm), cache=False)
    with pytest.raises(ImportError, match=r"safevid\[vllm\]"):
        backend.generate([ChatRequest([{"role": "user", "content": "hi"}])])
