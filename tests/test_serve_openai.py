"""`safevid serve` as the official `openai` client sees it: streaming, models, constrained JSON and regex."""

from __future__ import annotations

import json
import re
import sys

import pytest

from safevid.backends import ChatRequest, SamplingParams, StructuredOutput, make_backend
from safevid.backends.server import LoopbackServer
from safevid.testing.tiny_models import build_tiny_model

MESSAGES = [{"role": "user", "content": "Describe the clip."}]


@pytest.fixture(scope="module")
def server():
    with LoopbackServer(build_tiny_model("qwen2_vl"), model_name="tiny-qwen2-vl") as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_models_list_and_retrieve(client):
    import openai

    assert [m.id for m in client.models.list()] == ["tiny-qwen2-vl"]
    model = client.models.retrieve("tiny-qwen2-vl")
    assert (model.id, model.owned_by) == ("tiny-qwen2-vl", "safevid")
    with pytest.raises(openai.NotFoundError, match="The model 'other' does not exist"):
        client.models.retrieve("other")


def test_streaming_yields_the_completion_in_chunks_with_usage_at_the_end(client):
    whole = client.chat.completions.create(
        model="tiny-qwen2-vl", messages=MESSAGES, max_tokens=6, temperature=0, seed=1
    )
    chunks = list(
        client.chat.completions.create(
            model="tiny-qwen2-vl",
            messages=MESSAGES,
            max_tokens=6,
            temperature=0,
            seed=1,
            stream=True,
            stream_options={"include_usage": True},
            logprobs=True,
            top_logprobs=2,
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == whole.usage.completion_tokens  # one chunk per generated token
    assert "".join(content) == whole.choices[0].message.content
    assert all(
        len(c.choices[0].logprobs.content[0].top_logprobs) == 2
        for c in chunks
        if c.choices and c.choices[0].delta.content
    )
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_streaming_without_usage_and_stream_options_without_stream(client):
    import openai

    chunks = list(
        client.chat.completions.create(
            model="tiny-qwen2-vl", messages=MESSAGES, max_tokens=3, stream=True, n=2
        )
    )
    assert {c.choices[0].index for c in chunks} == {0, 1}
    assert all(c.usage is None and c.choices for c in chunks)
    with pytest.raises(openai.BadRequestError, match="only allowed when 'stream' is enabled"):
        client.chat.completions.create(
            model="tiny-qwen2-vl", messages=MESSAGES, max_tokens=3, stream_options={"include_usage": True}
        )


def test_parse_with_a_pydantic_model_with_nested_definitions(client):
    pytest.importorskip("llguidance")
    from typing import Literal

    import pydantic

    # Bounded fields: the longest valid answer fits max_tokens even spelled one byte per token.
    class Finding(pydantic.BaseModel):
        label: Literal["safe", "unsafe"]
        score: int = pydantic.Field(ge=1, le=5)

    class Report(pydantic.BaseModel):
        finding: Finding
        safe: bool

    assert "$defs" in Report.model_json_schema()  # nested models reach the server as $defs/$ref
    completion = client.chat.completions.parse(
        model="tiny-qwen2-vl", messages=MESSAGES, response_format=Report, max_tokens=96, temperature=0
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(message.parsed, Report)
    assert Report.model_validate_json(message.content) == message.parsed


def test_regex_constraints_are_decoded_under(client):
    pytest.importorskip("llguidance")
    for extra in (
        {"structured_outputs": {"regex": "[A-Z]{3}-[0-9]{2}"}},
        {"guided_regex": "[A-Z]{3}-[0-9]{2}"},
    ):
        completion = client.chat.completions.create(
            model="tiny-qwen2-vl", messages=MESSAGES, max_tokens=12, temperature=0.8, seed=3, extra_body=extra
        )
        assert re.fullmatch("[A-Z]{3}-[0-9]{2}", completion.choices[0].message.content)


def test_what_cannot_be_enforced_is_a_400_naming_it(client, monkeypatch):
    import openai

    with pytest.raises(openai.BadRequestError, match=r"unsupported keywords \['if'\]"):
        client.chat.completions.create(
            model="tiny-qwen2-vl",
            messages=MESSAGES,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"if": {}}}},
        )
    monkeypatch.setitem(sys.modules, "llguidance", None)  # the server without the `constrained` extra
    with pytest.raises(
        openai.BadRequestError, match=r"need llguidance: pip install 'safevid\[constrained\]'"
    ):
        client.chat.completions.create(
            model="tiny-qwen2-vl", messages=MESSAGES, extra_body={"structured_outputs": {"regex": "a+"}}
        )


def test_the_http_backend_identifies_and_probes_safevid_serve(server, tmp_path):
    pytest.importorskip("llguidance")
    schema = {
        "type": "object",
        "properties": {"risk": {"type": "integer", "enum": [1, 2, 3, 4, 5]}},
        "required": ["risk"],
        "additionalProperties": False,
    }
    backend = make_backend(
        kind="openai", model=server.model_name, base_url=server.base_url, cache_dir=str(tmp_path)
    )
    requests = [
        ChatRequest(MESSAGES, SamplingParams(max_tokens=16), StructuredOutput(json_schema=schema)),
        ChatRequest(MESSAGES, SamplingParams(max_tokens=16), StructuredOutput(regex="[a-z]{4}")),
    ]
    batch = backend.generate(requests, progress=False)
    assert backend.server.server == "safevid"
    assert batch[0].parsed["risk"] in {1, 2, 3, 4, 5}
    assert re.fullmatch("[a-z]{4}", batch[1].parsed)
    assert json.loads(batch[0].text) == batch[0].parsed
