"""Server-sent events of a chat completion, as the OpenAI API streams one (``stream: true``).

The official `openai` client reads a streamed completion only as ``text/event-stream``: ``data: <chunk
JSON>`` events of ``chat.completion.chunk`` objects, then ``data: [DONE]``. A server that answers
``stream: true`` with plain JSON makes the client's iterator yield nothing, without an error.

`completion_events` turns a finished completion into that stream: per choice a first chunk with the
role, one content chunk per generated token (with its log-probabilities when they were asked for; the
whole text in one chunk otherwise), a last chunk with the finish reason; then, with
``stream_options: {include_usage: true}``, a chunk with no choices and the usage, every other chunk
carrying ``usage: null`` as OpenAI's do. The transformers backend does not generate token by token
through a callback, so the events leave once the answer is complete: the framing is the API's, the
timing is a non-streamed request's.
"""

from __future__ import annotations

import json
from typing import Any

HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def check_stream_options(request: dict[str, Any]) -> None:
    """Raise `ValueError` (a 400) where OpenAI refuses ``stream_options``."""
    options = request.get("stream_options")
    if options is None:
        return
    if not request.get("stream"):
        raise ValueError("The 'stream_options' parameter is only allowed when 'stream' is enabled.")
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise ValueError("'stream_options' must be an object with a boolean 'include_usage'")


def completion_events(payload: bytes, request: dict[str, Any]) -> bytes:
    """The SSE body streaming the chat completion ``payload`` (see the module docstring)."""
    completion = json.loads(payload)
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    head = {k: completion[k] for k in ("id", "created", "model")}

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
        if include_usage:
            chunk.setdefault("usage", None)
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    events = []
    for choice in completion["choices"]:
        index, text = choice["index"], choice["message"]["content"]
        events.append(event([_delta(index, {"role": "assistant", "content": ""})]))
        entries = (choice.get("logprobs") or {}).get("content")
        if entries and "".join(e["token"] for e in entries) == text:
            for entry in entries:
                events.append(event([_delta(index, {"content": entry["token"]}, {"content": [entry]})]))
        elif text:
            events.append(event([_delta(index, {"content": text}, choice.get("logprobs"))]))
        events.append(event([_delta(index, {}, finish_reason=choice["finish_reason"])]))
    if include_usage:
        events.append(event([], usage=completion["usage"]))
    return b"".join(events) + b"data: [DONE]\n\n"


def _delta(
    index: int, delta: dict[str, Any], logprobs: Any = None, finish_reason: str | None = None
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
