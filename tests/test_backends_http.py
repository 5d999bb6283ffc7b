"""The OpenAI-compatible backend against the loopback server: faults, retries, cache, secrets, wire format."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import http.server
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from safevid.backends import (
    ChatRequest,
    SamplingParams,
    StructuredOutput,
    make_backend,
    text_part,
    video_part,
)
from safevid.testing.server import FaultConfig, FaultInjectingServer

FAKE_KEY = "sk-safevid-test-9f8e7d6c5b4a-DISTINCTIVE"


def _requests(count: int, prefix: str = "q", **sampling) -> list[ChatRequest]:
    return [
        ChatRequest(
            [{"role": "user", "content": f"{prefix} {i}"}],
            SamplingParams(max_tokens=8, **sampling),
            id=f"{prefix}-{i}",
        )
        for i in range(count)
    ]


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch):
    for name in ("SAFEVID_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    with FaultInjectingServer(latency_only=True, reply="Risk score: 2") as running:
        yield running


def _backend(server: FaultInjectingServer, tmp_path, **overrides):
    options = {
        "cache_dir": str(tmp_path / "cache"),
        "timeout_s": 5.0,
        "backoff_base_s": 0.005,
        "backoff_max_s": 0.02,
    }
    return make_backend(
        kind="openai", model=server.model_name, base_url=server.base_url, **{**options, **overrides}
    )


def test_two_servers_serving_one_model_name_do_not_share_cached_answers(tmp_path):
    # A base and an aligned model served under the same name, behind one shared response cache.
    with (
        FaultInjectingServer(latency_only=True, reply="base answer", model_name="model") as base,
        FaultInjectingServer(latency_only=True, reply="aligned answer", model_name="model") as aligned,
    ):
        first = _backend(base, tmp_path).generate(_requests(2), progress=False)
        second = _backend(aligned, tmp_path).generate(_requests(2), progress=False)
        again = _backend(aligned, tmp_path).generate(_requests(2), progress=False)
        assert (base.stats.chat_requests, aligned.stats.chat_requests) == (2, 2)
    assert [r.text for r in first] == ["base answer"] * 2
    assert [r.text for r in second] == ["aligned answer"] * 2
    assert [(r.text, r.cached) for r in again] == [("aligned answer", True)] * 2


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_round_trip_choices_logprobs_usage(server, tmp_path, http_client):
    backend = _backend(server, tmp_path, http_client=http_client)
    batch = backend.generate(_requests(3, n=2, top_logprobs=3), progress=False)
    assert [r.request_id for r in batch] == ["q-0", "q-1", "q-2"]
    for result in batch:
        assert result.ok
        assert result.attempts == 1
        assert not result.cached
        assert [c.text for c in result.choices] == ["Risk score: 2"] * 2
        logprobs = result.choices[0].logprobs
        assert [t.token for t in logprobs] == ["Risk", "score:", "2"]
        assert all(len(t.top) == 3 and t.top[0][0] == t.token for t in logprobs)
        assert result.usage.prompt_tokens == 2
        assert result.usage.completion_tokens == 6
    assert batch.summary.ok == 3
    assert batch.summary.completion_tokens == 18
    assert server.stats.chat_requests == 3


def test_faults_of_every_kind_end_as_results_and_rerun_pays_only_failures(tmp_path):
    """1,000 requests, 20% of each fault kind (3% hangs): each ends as a success or a recorded failure; a
    re-run with the cache re-requests exactly the failures.

    The client's deadline is far above any answer's latency, even on a loaded machine: an answer that
    missed it would be retried by the client before the server had read it, and the server's count of
    attempts would fall short of the client's. Only the hangs (held until the client gives up) reach it,
    and they are few so that waiting for them stays short.
    """
    faults = FaultConfig(
        latency_s=0.001,
        slow_rate=0.2,
        slow_s=0.005,
        error_500_rate=0.2,
        error_429_rate=0.2,
        retry_after_s=0.01,
        timeout_rate=0.03,
        hang_s=60.0,
        malformed_rate=0.2,
        truncated_rate=0.2,
        seed=1,
    )
    requests = _requests(1000)
    with FaultInjectingServer(latency_only=True, faults=faults) as server:
        backend = _backend(server, tmp_path, timeout_s=3.0, max_retries=3)
        first = backend.generate(requests, progress=False)
        assert len(first) == 1000
        reasons = Counter(r.error.reason for r in first if not r.ok)
        assert set(reasons) <= {"status_500", "status_429", "timeout", "protocol"}
        ok = [r for r in first if r.ok]
        assert all(r.text == "OK" for r in ok)
        assert all(r.attempts == 4 for r in first if not r.ok)  # 1 try + 3 retries, then recorded
        assert first.summary.ok == len(ok)
        assert first.summary.failed == sum(reasons.values())
        assert first.summary.ok + first.summary.failed == 1000
        assert 0 < first.summary.failed < 1000
        assert first.summary.retries > 0
        assert first.summary.failed_by_reason == dict(reasons)
        # Every attempt reached the server once: the retry policy is observable end to end.
        assert server.stats.chat_requests == sum(r.attempts for r in first)
        assert set(server.stats.faults) == {
            "slow",
            "error_500",
            "error_429",
            "timeout",
            "malformed",
            "truncated",
        }

        server.faults = FaultConfig()
        server.stats.chat_requests = 0
        second = backend.generate(requests, progress=False)
    assert server.stats.chat_requests == first.summary.failed
    assert second.summary.cached == first.summary.ok
    assert second.summary.ok == 1000
    assert [r.cached for r in second] == [r.ok for r in first]


def test_unparseable_structured_output_is_a_parse_failure_never_a_blank(server, tmp_path):
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    request = ChatRequest(
        [{"role": "user", "content": "judge"}], structured=StructuredOutput(json_schema=schema)
    )
    backend = _backend(server, tmp_path, structured_outputs="none")  # parse only: no constraint, no probe
    result = backend.generate([request], progress=False)[0]
    assert not result.ok
    assert result.error.kind == "parse"
    assert "no JSON value" in result.error.message
    assert result.choices[0].text == "Risk score: 2"  # the raw text stays inspectable
    with pytest.raises(RuntimeError, match="parse"):
        _ = result.text
    with pytest.raises(RuntimeError, match="parse"):
        _ = result.parsed
    assert len(backend.cache) == 0  # failures are never cached
    again = backend.generate([request], progress=False)[0]
    assert again.error.kind == "parse"
    assert not again.cached
    assert server.stats.chat_requests == 2

    choice = ChatRequest(
        [{"role": "user", "content": "score?"}], structured=StructuredOutput(choice=tuple("12345"))
    )
    assert backend.generate([choice], progress=False)[0].parsed == "2"


def test_retry_after_is_honoured(tmp_path):
    # Backoff alone would wait ~1 ms: only honouring the header explains the measured wait.
    with FaultInjectingServer(
        latency_only=True, faults=FaultConfig(error_429_rate=1.0, retry_after_s=1)
    ) as server:
        backend = _backend(server, tmp_path, cache=False, backoff_base_s=0.001, backoff_max_s=0.001)
        timer = threading.Timer(0.3, lambda: setattr(server, "faults", FaultConfig()))
        timer.start()
        start = time.perf_counter()
        batch = backend.generate(_requests(1), progress=False)
        elapsed = time.perf_counter() - start
        timer.join()
    assert batch[0].ok
    assert batch[0].attempts == 2
    assert batch.summary.retries == 1
    assert elapsed >= 1.0


def test_retry_after_longer_than_allowed_fails_fast(tmp_path):
    with FaultInjectingServer(
        latency_only=True, faults=FaultConfig(error_429_rate=1.0, retry_after_s=600)
    ) as server:
        result = _backend(server, tmp_path, cache=False, max_retry_after_s=10).generate(
            _requests(1), progress=False
        )[0]
    assert result.error.reason == "status_429"
    assert "exceeds max_retry_after_s" in result.error.message
    assert result.attempts == 1


class _EchoHeadersHandler(http.server.BaseHTTPRequestHandler):
    """A careless gateway: its error bodies echo the request headers, Authorization included."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"error": {"message": f"upstream failed for {dict(self.headers)}"}}).encode()
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_api_key_from_env_never_reaches_logs_cache_config_or_errors(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SAFEVID_API_KEY", FAKE_KEY)
    caplog.set_level(logging.DEBUG)
    with FaultInjectingServer(latency_only=True, api_key=FAKE_KEY) as server:
        backend = _backend(server, tmp_path)
        ok = backend.generate(_requests(3), progress=False)  # the server rejects requests without the key
    assert all(r.ok for r in ok)

    echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeadersHandler)
    thread = threading.Thread(target=echo.serve_forever, daemon=True)
    thread.start()
    try:
        failing = make_backend(
            kind="openai",
            model="m",
            base_url=f"http://127.0.0.1:{echo.server_port}/v1",
            cache_dir=str(tmp_path / "cache"),
            max_retries=1,
            backoff_base_s=0.001,
        )
        failed = failing.generate(_requests(2, prefix="fail"), progress=False)
    finally:
        echo.shutdown()
    assert all(r.error.reason == "status_503" for r in failed)
    assert all("Authorization" in r.error.message and "***" in r.error.message for r in failed)
    texts = [str(r.error) for r in failed] + [repr(r) for r in [*ok, *failed]]
    texts += [
        caplog.text,
        json.dumps(dataclasses.asdict(backend.config)),
        repr(backend.config),
        str(ok.summary),
    ]
    texts += [p.read_text() for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 3
    for text in texts:
        assert FAKE_KEY not in text


class _EchoKeyFragmentsHandler(http.server.BaseHTTPRequestHandler):
    """OpenAI's way of refusing a key: the message quotes its start and end (and this one its middle too)."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        key = self.headers["Authorization"].removeprefix("Bearer ")
        message = f"Incorrect API key provided: {key[:10]}****{key[-8:]} (middle {key[12:24]})"
        body = json.dumps({"error": {"message": message}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_server_echoing_parts_of_the_key_leaks_none_of_them(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SAFEVID_API_KEY", FAKE_KEY)
    caplog.set_level(logging.DEBUG)
    echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyFragmentsHandler)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    try:
        backend = make_backend(
            kind="openai",
            model="m",
            base_url=f"http://127.0.0.1:{echo.server_port}/v1",
            cache=False,
            max_retries=0,
        )
        [failed] = backend.generate(_requests(1), progress=False)
    finally:
        echo.shutdown()
    assert failed.error.reason == "status_401"
    assert "Incorrect API key provided: ***" in failed.error.message
    for fragment in (FAKE_KEY[:10], FAKE_KEY[-8:], FAKE_KEY[12:24]):
        assert fragment not in str(failed.error)
        assert fragment not in caplog.text


def test_connection_refused_and_non_retryable_status_are_recorded(server, tmp_path):
    refused = make_backend(
        kind="openai",
        model="m",
        base_url="http://127.0.0.1:9/v1",
        cache=False,
        max_retries=2,
        backoff_base_s=0.001,
    )
    result = refused.generate(_requests(1), progress=False)[0]
    assert result.error.kind == "connection"
    assert result.attempts == 3
    assert "127.0.0.1:9" in result.error.message

    bad = _backend(server, tmp_path, extra_body={"n": "two"})
    result = bad.generate(_requests(1), progress=False)[0]
    assert result.error.reason == "status_400"
    assert result.attempts == 1
    unsupported = ChatRequest(
        [{"role": "user", "content": "x"}],
        structured=StructuredOutput(json_schema={"type": "object", "if": {}}),
    )
    # Sent as it is (no probe: the latency-only server enforces no schema) to meet the server's check.
    result = _backend(server, tmp_path, probe_structured_outputs=False).generate(
        [unsupported], progress=False
    )[0]
    assert result.error.reason == "status_400"
    assert "cannot decode under this constraint: Unimplemented keys" in result.error.message


def test_multi_megabyte_bodies_are_served(server, tmp_path):
    # Video frames sent as data URLs make bodies far above web servers' usual 1 MiB default.
    request = ChatRequest([{"role": "user", "content": "x" * (3 << 20)}], SamplingParams(max_tokens=4))
    assert (
        _backend(server, tmp_path, cache=False).generate([request], progress=False)[0].text == "Risk score: 2"
    )


def test_bad_transport_settings_are_clear_errors():
    with pytest.raises(ValueError, match=r"http_client: 'native' is not one of \['aiohttp', 'httpx'\]"):
        make_backend(kind="openai", model="m", base_url="http://x/v1", http_client="native")
    with pytest.raises(ValueError, match="base_url must be an http:// or https:// URL, got 'ftp://x/v1'"):
        make_backend(kind="openai", model="m", base_url="ftp://x/v1")


def test_bad_media_fails_only_its_request(server, tmp_path):
    requests = [
        ChatRequest(
            [{"role": "user", "content": [video_part(str(tmp_path / "missing.mp4")), text_part("hi")]}]
        ),
        *_requests(1),
    ]
    batch = _backend(server, tmp_path, video_input="video_url").generate(requests, progress=False)
    assert batch[0].error.kind == "invalid_request"
    assert "missing.mp4" in batch[0].error.message
    assert batch[1].ok


def test_video_wire_formats(tmp_path, sampled_video, test_video):
    request = ChatRequest(
        [{"role": "user", "content": [video_part(sampled_video), text_part("Describe.")]}],
        structured=StructuredOutput(choice=("safe", "unsafe")),
    )
    frames = make_backend(
        kind="openai", model="m", base_url="http://x/v1", structured_outputs="none"
    ).build_body(request)
    parts = frames["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url"] * len(sampled_video.frames) + ["text"]
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in parts[:-1])
    assert "structured_outputs" not in frames
    assert "response_format" not in frames

    vllm = make_backend(
        kind="openai", model="m", base_url="http://x/v1", video_input="video_url", structured_outputs="vllm"
    ).build_body(request)
    (video, _) = vllm["messages"][0]["content"]
    header, _, payload = video["video_url"]["url"].partition(",")
    assert header == "data:video/jpeg;base64"
    assert len(payload.split(",")) == len(sampled_video.frames)
    assert base64.b64decode(payload.split(",")[0])[:2] == b"\xff\xd8"  # JPEG magic
    assert vllm["structured_outputs"] == {"choice": ["safe", "unsafe"]}

    from_path = ChatRequest(
        [{"role": "user", "content": [video_part(str(test_video))]}], SamplingParams(seed=3)
    )
    body = make_backend(kind="openai", model="m", base_url="http://x/v1", video_input="video_url").build_body(
        from_path
    )
    assert body["messages"][0]["content"][0]["video_url"]["url"].startswith("data:video/mp4;base64,")
    assert body["seed"] == 3
    assert "logprobs" not in body


def test_official_openai_client_against_the_loopback_server(server):
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == [server.model_name]
    completion = client.chat.completions.create(
        model=server.model_name,
        messages=[{"role": "user", "content": "hi"}],
        logprobs=True,
        top_logprobs=2,
        n=2,
    )
    assert [c.message.content for c in completion.choices] == ["Risk score: 2"] * 2
    assert completion.choices[0].logprobs.content[0].top_logprobs[0].token == "Risk"
    assert completion.usage.completion_tokens == 6


def test_sync_generate_works_inside_a_running_event_loop(server, tmp_path):
    backend = _backend(server, tmp_path, cache=False)

    async def caller():
        return backend.generate(_requests(2), progress=False)

    assert all(r.ok for r in asyncio.run(caller()))


def test_progress_bar_and_summary(server, tmp_path, capsys):
    batch = _backend(server, tmp_path).generate(_requests(40), progress=True)
    err = capsys.readouterr().err
    assert "40/40" in err
    assert "retries=0" in err
    assert "failed=0" in err
    assert str(batch.summary).startswith("40 requests")
    assert batch.summary.requests_per_s > 0


def test_cli_serves_latency_only(tmp_path):
    import openai

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "safevid.testing",
            "fault-serve",
            "--latency-only",
            "--port",
            "0",
            "--reply",
            "hello there",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        base_url = line.rsplit(" ", 1)[-1].strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url), line
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="latency-only", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "hello there"
    finally:
        process.terminate()
        process.wait(timeout=10)
