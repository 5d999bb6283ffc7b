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

    with pytest.raises(openai.BadRequestError, match=r'Unimplemented keys: \["if"\]'):
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


def _error(client, **request) -> tuple[int, dict]:
    """Status and OpenAI-shaped error of a refused request."""
    import openai

    request = {"model": "tiny-qwen2-vl", "messages": MESSAGES, "max_tokens": 2, **request}
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(**request)
    body = refused.value.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return refused.value.status_code, body["error"]


def _image(path) -> str:
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 30, 30)).save(path)
    return str(path)


def _with_media(url: str, kind: str = "image_url") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": kind, kind: {"url": url}}, {"type": "text", "text": "What?"}]}
    ]


def test_local_media_are_refused_unless_under_an_allowed_root(client, server, tmp_path):
    allowed, outside = tmp_path / "media", tmp_path / "private"
    allowed.mkdir()
    outside.mkdir()
    inside = _image(allowed / "red.png")
    secret = _image(outside / "secret.png")
    (allowed / "link.png").symlink_to(secret)
    # By default, no local path at all: file:// URLs and bare paths, images and videos.
    for url, kind in (
        (f"file://{inside}", "image_url"),
        (inside, "image_url"),
        (f"file://{inside}", "video_url"),
    ):
        status, error = _error(client, messages=_with_media(url, kind))
        assert (status, error["code"]) == (400, "local_media_not_allowed")
        assert error["param"] == f"messages[0].content[0].{kind}"
        assert "--allowed-local-media-path" in error["message"]
    with LoopbackServer(
        server.model_dir, model_name="tiny-qwen2-vl", allowed_local_media_path=allowed
    ) as confined:
        import openai

        confined_client = openai.OpenAI(base_url=confined.base_url, api_key="unused", max_retries=0)
        answer = confined_client.chat.completions.create(
            model="tiny-qwen2-vl", messages=_with_media(f"file://{inside}"), max_tokens=2
        )
        assert answer.choices[0].message.content is not None
        escapes = (f"file://{allowed}/../private/secret.png", str(allowed / "link.png"), secret)
        for url in escapes:
            status, error = _error(confined_client, messages=_with_media(url))
            assert (status, error["code"]) == (400, "local_media_not_allowed"), url
            assert "outside the allowed local media paths" in error["message"]
        assert confined.stats.completed == 1


def test_n_and_top_logprobs_are_capped_with_a_400_naming_the_cap(client):
    status, error = _error(client, n=17)
    assert (status, error["param"]) == (400, "n")
    assert "cap of 16 (--max-n)" in error["message"]
    status, error = _error(client, logprobs=True, top_logprobs=21)
    assert (status, error["param"]) == (400, "top_logprobs")
    assert "cap of 20 (--max-top-logprobs)" in error["message"]


def test_malformed_requests_are_4xx_in_openais_shape_never_500(client, server):
    no_role = [{"content": "hi"}]
    assert _error(client, messages=no_role)[1]["param"] == "messages[0].role"
    wrong_content = [{"role": "user", "content": 42}]
    assert _error(client, messages=wrong_content)[1]["param"] == "messages[0].content"
    not_a_part = [{"role": "user", "content": ["hi"]}]
    assert _error(client, messages=not_a_part)[1]["param"] == "messages[0].content[0].type"
    bad_text = [{"role": "user", "content": [{"type": "text", "text": 3}]}]
    assert _error(client, messages=bad_text)[1]["param"] == "messages[0].content[0].text"
    bad_url = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 7}}]}]
    assert _error(client, messages=bad_url)[1]["param"] == "messages[0].content[0].image_url"
    assert _error(client, stop=[1, 2])[1]["param"] == "stop"
    for messages in (no_role, wrong_content, not_a_part, bad_text, bad_url):
        assert _error(client, messages=messages)[0] == 400
    status, error = _error(client, model="gpt-4o")
    assert (status, error["code"], error["param"]) == (404, "model_not_found", "model")
    assert "'gpt-4o' does not exist" in error["message"]


def test_an_image_sent_to_a_text_only_model_is_a_400(tmp_path):
    import openai

    with LoopbackServer(build_tiny_model("text"), model_name="tiny-text") as text_server:
        client = openai.OpenAI(base_url=text_server.base_url, api_key="unused", max_retries=0)
        pixel = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
        status, error = _error(client, model="tiny-text", messages=_with_media(pixel))
        assert (status, error["param"]) == (400, "messages[0].content[0]")
        assert "tiny-text is a text-only model" in error["message"]
        assert client.chat.completions.create(model="tiny-text", messages=MESSAGES, max_tokens=2).choices


def test_the_serve_flags_reach_the_server(tmp_path):
    from safevid.cli import build_parser
    from safevid.commands.serve import server_options

    media, more = tmp_path / "media", tmp_path / "more"
    media.mkdir()
    more.mkdir()
    flags = ["--allowed-local-media-path", str(media), "--allowed-local-media-path", str(more)]
    args = build_parser().parse_args(["serve", "ckpt", *flags, "--max-n", "4", "--max-top-logprobs", "5"])
    configured = LoopbackServer(None, **server_options(args))
    assert configured.media_roots == (media.resolve(), more.resolve())
    assert (configured.max_n, configured.max_top_logprobs) == (4, 5)
    default = LoopbackServer(None, **server_options(build_parser().parse_args(["serve", "ckpt"])))
    assert (default.media_roots, default.max_n, default.max_top_logprobs) == ((), 16, 20)
    with pytest.raises(ValueError, match="is not a folder"):
        LoopbackServer(None, allowed_local_media_path=tmp_path / "missing")


def _post(server, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """Status and JSON answer of a raw POST to the chat route (for bodies the `openai` client cannot send)."""
    import http.client

    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.request(
            "POST", "/v1/chat/completions", body, {"Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _chat_body(**fields) -> bytes:
    return json.dumps({"model": "tiny-qwen2-vl", "messages": MESSAGES, "max_tokens": 2, **fields}).encode()


def test_fields_are_checked_as_vllm_checks_them_with_a_400_naming_the_field(client, server):
    refused = {
        "n": {"n": "40"},
        "temperature": {"temperature": -1},
        "top_p": {"top_p": 0},
        "max_tokens": {"max_tokens": "5"},
        "seed": {"seed": 1.5},
        "stream": {"stream": "yes"},
        "response_format": {"response_format": "json"},
        "response_format.type": {"response_format": {"type": "json"}},
        "structured_outputs": {"structured_outputs": 5},
        "guided_choice": {"guided_choice": "abc"},
        "structured_outputs.choice": {"structured_outputs": {"choice": []}},
        "structured_outputs.regex": {"structured_outputs": {"regex": 3}},
    }
    for param, fields in refused.items():
        status, error = _post(server, _chat_body(**fields))
        assert (status, error["error"]["param"]) == (400, param), fields
    # top_logprobs without logprobs: true is a 400 in vLLM and OpenAI (it was a 200 without log-probs).
    status, error = _error(client, top_logprobs=2)
    assert (status, error["param"]) == (400, "top_logprobs")
    assert "`logprobs` must be set to true" in error["message"]
    assert _error(client, logprobs=False, top_logprobs=1)[0] == 400
    answer = client.chat.completions.create(
        model="tiny-qwen2-vl", messages=MESSAGES, max_tokens=2, logprobs=True, top_logprobs=0
    )
    assert answer.choices[0].logprobs.content[0].top_logprobs == []


def test_bodies_that_would_exhaust_the_parser_or_the_validator_are_400s(client, server):
    nan = _chat_body(temperature=0.5).replace(b"0.5", b"NaN")
    deep_body = b'{"messages": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cycle = {"$ref": "#/$defs/a", "$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}]}}}
    bodies = {
        "NaN is not a JSON number": nan,
        "nested deeper than 64 levels": deep_body,
        "refers to itself without nesting": _chat_body(
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": cycle}}
        ),
    }
    # The 5000-deep schema would overflow `json.dumps` here too: send it as text.
    bodies["nested deeper than 64 levels (schema)"] = _chat_body(guided_json="SCHEMA").replace(
        b'"SCHEMA"', b'{"properties": {"a": ' * 5000 + b"{}" + b"}}" * 5000
    )
    for expected, body in bodies.items():
        status, error = _post(server, body)
        assert status == 400, expected
        assert expected.split(" (")[0] in error["error"]["message"]
    assert client.chat.completions.create(model="tiny-qwen2-vl", messages=MESSAGES, max_tokens=2).choices


def _exchange(server, data: bytes, *, wait_for_close: bool = False) -> bytes:
    """Send raw bytes on a fresh socket; the first response (or, with ``wait_for_close``, all until the server
    closes). A server that keeps a half-open socket fails the 30 s socket timeout instead of hanging the test."""
    import socket

    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if not wait_for_close and b"\r\n\r\n" in received:
                break
        return received


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_hostile_connections_get_a_4xx_before_the_body_and_the_server_keeps_serving(client, server):
    body = _chat_body()
    post = b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
    port = str(server.port).encode()
    # DNS rebinding: a page on another name reaches the loopback server with its own name in Host.
    foreign = _exchange(server, post % (b"evil.example:" + port, b"application/json", len(body)) + body)
    assert _status(foreign) == 400
    assert b"invalid_host" in foreign
    for host in (b"localhost:" + port, b"127.0.0.1:" + port):
        assert _status(_exchange(server, post % (host, b"application/json", len(body)) + body)) == 200
    # A browser's cross-origin "simple" POST (text/plain needs no CORS preflight).
    plain = _exchange(server, post % (b"127.0.0.1:" + port, b"text/plain", len(body)) + body)
    assert _status(plain) == 415
    assert b"application/json" in plain
    # 4 GB announced: refused from the headers, the body never read, the connection closed.
    huge = _exchange(server, post % (b"127.0.0.1", b"application/json", 4 * 1024**3), wait_for_close=True)
    assert _status(huge) == 413
    assert b"request_too_large" in huge
    assert client.chat.completions.create(model="tiny-qwen2-vl", messages=MESSAGES, max_tokens=2).choices


def test_half_open_sockets_are_closed_and_the_fault_server_checks_host_too():
    from safevid.testing.server import FaultInjectingServer

    with FaultInjectingServer(latency_only=True, header_timeout_s=0.5, body_timeout_s=0.5) as server:
        # Headers that never end: closed after the header timeout, nothing answered.
        assert _exchange(server, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n") == b""
        # A body that stops short: a 408, then closed.
        stalled = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        )
        answer = _exchange(server, stalled + b"Content-Length: 100\r\n\r\n{", wait_for_close=True)
        assert _status(answer) == 408
        assert b"request_timeout" in answer
        assert _post(server, b"{}", {"Host": "attacker.example"})[0] == 400
        status, reply = _post(server, json.dumps({"messages": MESSAGES}).encode())
        assert (status, reply["choices"][0]["message"]["content"]) == (200, "OK")


def test_a_fifo_inside_the_allowed_folder_is_refused_unopened(server, tmp_path):
    import os

    import openai

    allowed = tmp_path / "media"
    allowed.mkdir()
    os.mkfifo(allowed / "pipe.png")  # opening it for reading would block until a writer comes: never
    (allowed / "null.png").symlink_to("/dev/null")
    with LoopbackServer(
        server.model_dir, model_name="tiny-qwen2-vl", allowed_local_media_path=[allowed, "/dev"]
    ) as confined:
        confined_client = openai.OpenAI(base_url=confined.base_url, api_key="unused", max_retries=0)
        for url, kind in ((allowed / "pipe.png", "image_url"), (allowed / "null.png", "video_url")):
            status, error = _error(confined_client, messages=_with_media(f"file://{url}", kind))
            assert (status, error["code"]) == (400, "local_media_not_allowed")
            assert "is not a regular file" in error["message"]
        assert confined_client.chat.completions.create(
            model="tiny-qwen2-vl", messages=MESSAGES, max_tokens=2
        ).choices


def test_images_and_frames_are_down_scaled_while_decoded(tmp_path, monkeypatch):
    import base64
    import io

    from PIL import Image

    from safevid.backends import media
    from safevid.backends.server import _internal_messages

    def jpeg(width: int, height: int) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (10, 200, 30)).save(buffer, format="JPEG")
        return buffer.getvalue()

    image_url = media.data_url(jpeg(3840, 2160), "image/jpeg")
    frames_url = "data:video/jpeg;base64," + ",".join(
        base64.b64encode(jpeg(1920, 1080)).decode() for _ in range(3)
    )
    content = [
        {"type": "image_url", "image_url": {"url": image_url}},
        {"type": "video_url", "video_url": {"url": frames_url}},
    ]
    [message] = _internal_messages([{"role": "user", "content": content}], max_pixels=(100_000, 20_000))
    image, video = (part.get("image", part.get("video")) for part in message["content"])
    assert image.width * image.height <= 100_000
    assert abs(image.width / image.height - 16 / 9) < 0.05
    assert video.frames.shape[0] == 3
    assert video.frames.shape[2] * video.frames.shape[3] <= 20_000
    # An image over PIL's decompression-bomb bound is refused from its header, never decoded.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match="over the 1000 pixels decoded"):
        media.open_image(io.BytesIO(jpeg(40, 40)), 100)


def test_host_is_checked_against_the_bound_address():
    from safevid.backends.request_checks import host_allowed

    on_loopback = ["localhost:8000", "127.0.0.1", "[::1]:8000"]
    assert all(host_allowed(host, "127.0.0.1") for host in on_loopback)
    assert not any(host_allowed(host, "127.0.0.1") for host in ("evil.example", "10.0.0.5", "", None))
    # Bound to every interface: any address is this server; a DNS name only if allowed.
    assert host_allowed("10.0.0.5:8000", "0.0.0.0")
    assert not host_allowed("gpu-box:8000", "0.0.0.0")
    assert host_allowed("GPU-box:8000", "0.0.0.0", ["gpu-box"])
    # Bound to one address: that address (or an allowed name), nothing else.
    assert host_allowed("10.0.0.5:8000", "10.0.0.5")
    assert not host_allowed("10.0.0.6", "10.0.0.5")
