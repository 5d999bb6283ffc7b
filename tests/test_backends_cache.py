"""The response cache: content-hash keys, atomic writes under concurrency and kills, failures not stored."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from safevid.backends import (
    ChatRequest,
    ChatResult,
    Choice,
    RequestError,
    ResponseCache,
    SamplingParams,
    Usage,
)
from safevid.backends.cache import request_key
from safevid.backends.media import FrameList
from safevid.backends.types import StructuredOutput, video_part


def _request(content, **sampling) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": content}], SamplingParams(**sampling))


def _ok(request: ChatRequest, text: str = "fine") -> ChatResult:
    return ChatResult(request.id, choices=[Choice(text, "stop")], usage=Usage(3, 1))


def test_key_follows_content_not_identity():
    frames = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    same = _request([video_part(FrameList(frames.clone(), 2.0))])
    key = request_key("openai", "m", None, _request([video_part(FrameList(frames, 2.0))]))
    assert key == request_key("openai", "m", None, same)
    changed = frames.clone()
    changed[0, 0, 0, 0] ^= 1
    different = {
        request_key("openai", "m", None, _request([video_part(FrameList(changed, 2.0))])),
        request_key("openai", "m", None, _request([video_part(FrameList(frames, 1.0))])),  # other timestamps
        request_key("openai", "m2", None, same),
        request_key("openai", "m", "rev2", same),
        request_key("vllm", "m", None, same),
        request_key("openai", "m", None, _request([video_part(FrameList(frames, 2.0))], temperature=0.7)),
        request_key(
            "openai", "m", None, ChatRequest(same.messages, structured=StructuredOutput(choice=("a",)))
        ),
    }
    assert key not in different
    assert len(different) == 7


def test_file_video_key_hashes_bytes(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"one")
    first = request_key("openai", "m", None, _request([video_part(str(path))]))
    time.sleep(0.01)
    path.write_bytes(b"two")
    assert request_key("openai", "m", None, _request([video_part(str(path))])) != first


def test_round_trip_and_failures_not_stored(tmp_path):
    cache = ResponseCache(tmp_path)
    request = _request("hi")
    cache.put("a" * 64, _ok(request))
    cache.put("b" * 64, ChatResult(request.id, error=RequestError("timeout", "slow")))
    hit = cache.get("a" * 64, request)
    assert hit.cached
    assert hit.text == "fine"
    assert hit.usage.completion_tokens == 1
    assert cache.get("b" * 64, request) is None
    assert len(cache) == 1


def test_corrupt_or_partial_entries_are_misses(tmp_path):
    cache = ResponseCache(tmp_path)
    request = _request("hi")
    (tmp_path / "cc").mkdir()
    (tmp_path / "cc" / f"{'c' * 64}.json").write_text('{"format": 1, "result": {"choi')
    assert cache.get("c" * 64, request) is None


def test_concurrent_writers_never_tear_an_entry(tmp_path):
    cache = ResponseCache(tmp_path)
    request = _request("hi")
    big = "x" * 200_000

    def writer(worker: int) -> None:
        for i in range(20):
            cache.put(f"{i % 5:064d}", _ok(request, f"{worker}-{big}"))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 5
    for i in range(5):
        assert cache.get(f"{i:064d}", request).text.endswith(big)
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_writer_killed_mid_write_leaves_only_complete_entries(tmp_path):
    script = f"""
import itertools
from safevid.backends import ChatResult, Choice, ResponseCache
cache = ResponseCache({str(tmp_path)!r})
print("ready", flush=True)
for i in itertools.count():
    cache.put(f"{{i:064x}}", ChatResult("r", choices=[Choice("y" * 3_000_000)]))
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    entries = list(tmp_path.rglob("*.json"))
    assert entries  # it wrote some before dying
    for entry in entries:
        assert len(json.loads(entry.read_text())["result"]["choices"][0]["text"]) == 3_000_000
