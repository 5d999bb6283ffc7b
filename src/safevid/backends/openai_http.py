"""The OpenAI-compatible HTTP backend: vLLM serve, SGLang, TGI, OpenAI, or `safevid serve`.

It speaks ``POST {base_url}/chat/completions`` with at most ``max_concurrency`` requests in flight
on as many keep-alive connections (an aiohttp or httpx transport from
`safevid.backends.transport`, created per batch). The retry policy is ours and observable: 429,
5xx, timeouts, connection errors and unreadable bodies are retried up to ``max_retries`` times
with exponential backoff and full jitter, a ``Retry-After`` (or ``retry-after-ms``) header sets the
wait instead, and each attempt has a total deadline of ``timeout_s``. Other 4xx statuses fail at
once. The `openai` client is not used for sending: it sits on httpx, whose pool overhead capped
throughput at high concurrency (see `safevid.backends.transport`), and adds its own retry loop and
per-request pydantic models; the wire format is the same, and tests drive the loopback server
with the real `openai` client too.

Constraints go out in the server's own structured-output dialect (`safevid.backends.dialects`):
with ``structured_outputs: auto`` the first batch asks the server what it is, and before the first
constrained batch one probe request checks that the server honours the constraint, so a server that
ignores it stops the run with an error naming the fix instead of answering free text.

The API key comes from the environment only (``SAFEVID_API_KEY`` or ``OPENAI_API_KEY`` by default)
and is redacted from every error message this module produces: the whole key and any part of it of 8 or more
characters that a server echoes (`redact_key`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import logging
import os
import random
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from safevid.backends import dialects, media
from safevid.backends.base import (
    Backend,
    BackendConfig,
    BatchHooks,
    GenerationBatch,
    RequestStream,
    _BatchRun,
    look_up,
    settle,
)
from safevid.backends.types import ChatRequest, ChatResult, Choice, RequestError, TokenLogprob, Usage

logger = logging.getLogger(__name__)

_RETRYABLE_STATUS = {408, 409, 425, 429}
_HAS_TIMEOUT = sys.version_info >= (3, 11)


class OpenAIBackend(Backend):
    """Batched chat completions against an OpenAI-compatible server (see the module docstring)."""

    kind = "openai"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        base = config.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base!r}")
        self.base_url = base.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.server: dialects.ServerIdentity | None = None
        self._probed: set[str] = set()

    def cache_extra(self) -> Any:
        # How media and constraints are sent changes what the model sees, and the server which model answers:
        # two servers can serve different weights under one name (a base and an aligned model, both "model").
        c = self.config
        return {
            "server": re.sub(r"//[^/@]*@", "//", self.url),  # credentials in the URL do not change the answer
            "video_input": c.video_input,
            "image_format": c.image_format,
            "structured": c.structured_outputs,
            "extra_body": c.extra_body,
        }

    def generate(self, requests: Sequence[ChatRequest], *, progress: bool | None = None) -> GenerationBatch:
        """Synchronous wrapper of `agenerate` (runs its own event loop, in a thread if one is running)."""
        out: list[GenerationBatch] = []

        # The coroutine `asyncio.run` runs returns nothing: on exit, CPython 3.11's SIGINT bookkeeping
        # formats the repr of its main task, result included, and the repr of a 10,000-result batch
        # is a measurable cost per result (docs/benchmarks.md, backend throughput).
        async def run() -> None:
            out.append(await self.agenerate(requests, progress=progress))

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(run())
        else:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, run()).result()
        return out[0]

    async def agenerate(
        self, requests: Sequence[ChatRequest], *, progress: bool | None = None
    ) -> GenerationBatch:
        """Run a batch on the current event loop; one result per request, in order."""
        run = _BatchRun(self, requests, progress)
        if run.pending:
            await self._agenerate([requests[i] for i in run.pending], run)
        return run.close()

    def _generate(self, requests: list[ChatRequest], hooks: BatchHooks) -> None:
        asyncio.run(self._agenerate(requests, hooks))

    def open_stream(self) -> RequestStream:
        """Requests one at a time, up to ``max_concurrency`` in flight, each sent as soon as it is submitted."""
        return _OpenAIStream(self)

    def _headers(self) -> tuple[dict[str, str], str | None]:
        headers = {"Content-Type": "application/json", "User-Agent": "safevid"}
        api_key = self.config.api_key()
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers, api_key

    async def _agenerate(self, requests: list[ChatRequest], hooks: BatchHooks) -> None:
        from safevid.backends.transport import TRANSPORTS

        c = self.config
        headers, api_key = self._headers()
        transport = TRANSPORTS[c.http_client](self.url, headers, c.max_concurrency)
        sender = _Sender(self, transport, hooks, api_key)
        try:
            await self._check_structured_outputs(requests, transport, sender)
        except BaseException:
            await transport.aclose()
            raise
        # A fixed pool of workers, not one task per request: memory stays flat on huge batches.
        pending = iter(enumerate(requests))

        async def worker() -> None:
            for position, request in pending:
                hooks.finish(position, await sender.send(request))

        try:
            await asyncio.gather(*(worker() for _ in range(min(c.max_concurrency, len(requests)))))
        finally:
            await transport.aclose()

    @property
    def dialect(self) -> dialects.Dialect:
        """The structured-output dialect constraints go out in (``auto``: the identified server's)."""
        if self.config.structured_outputs != "auto":
            return self.config.structured_outputs  # type: ignore[return-value]
        if self.server is None:
            raise RuntimeError("structured_outputs is 'auto' and the server is not identified yet")
        return self.server.dialect

    async def _check_structured_outputs(
        self, requests: list[ChatRequest], transport: Any, sender: _Sender
    ) -> None:
        """Identify the server (``auto``), then probe each constraint kind this batch uses, once.

        A batch without constraints still has the server identified (TGI wants its own sampling
        fields), but one that cannot be identified, or not reached, then goes out as it is.
        """
        c = self.config
        if c.structured_outputs == "none":
            return
        specs = {dialects.constraint_kind(r.structured): r.structured for r in requests if r.structured}
        if self.server is None:
            if c.structured_outputs != "auto":
                self.server = dialects.ServerIdentity("the server", c.structured_outputs)
            else:
                documents = await self._server_documents(transport)
                if not any(document is not _UNREACHABLE for document in documents.values()):
                    # Nothing answers: the requests themselves fail, each an error result with its cause
                    # (a judge's undetermined verdicts), and the next batch tries to identify it again.
                    return
                try:
                    self.server = dialects.identify(self.base_url, _answered(documents))
                except dialects.StructuredOutputsNotHonouredError:
                    if specs:
                        raise
                    return
        if not c.probe_structured_outputs:
            return
        for kind, spec in specs.items():
            if kind in self._probed:
                continue
            if not dialects.expressible(self.server.dialect, spec):
                raise dialects.unexpressible_error(self.server, self.base_url, spec)
            probe = dialects.probe_request(kind)
            dialects.check_probe(self.server, self.base_url, probe, await sender.send(probe))
            self._probed.add(kind)

    async def _server_documents(self, transport: Any) -> dict[str, Any]:
        """What the server says about itself (`dialects.identify` reads it): three GETs, once per backend."""
        root = dialects.root_url(self.base_url)
        urls = {
            "/v1/models": self.base_url + "/models",
            "/version": root + "/version",
            "/info": root + "/info",
        }
        return {path: await self._get_json(transport, url) for path, url in urls.items()}

    async def _get_json(self, transport: Any, url: str) -> Any:
        """The JSON object at ``url``; `None` where there is none (404, not JSON); `_UNREACHABLE` where
        nothing answered."""
        from safevid.backends.transport import TransportError

        try:
            response = await asyncio.wait_for(transport.get(url), self.config.timeout_s)
        except (TransportError, asyncio.TimeoutError):
            return _UNREACHABLE
        try:
            document = json.loads(response.content) if response.status_code == 200 else None
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    def build_body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body of ``request``: wire-format messages, sampling, constraints, extra body."""
        c, s = self.config, request.sampling
        body: dict[str, Any] = {
            "model": c.model,
            "messages": [self._wire_message(m) for m in request.messages],
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "n": s.n,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        if s.top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = s.top_logprobs
        # An `auto` server that did not answer identification gets no constraint: the answer is still
        # parse-and-validated, so nothing unconstrained passes as constrained.
        dialect_known = c.structured_outputs != "auto" or self.server is not None
        if request.structured is not None and c.structured_outputs != "none" and dialect_known:
            body.update(dialects.constraint_fields(self.dialect, request.structured))
        if self.server is not None:
            dialects.adapt_sampling(self.server.dialect, body)
        body.update(c.extra_body)
        return body

    def _wire_message(self, message: dict[str, Any]) -> dict[str, Any]:
        content = message["content"]
        if isinstance(content, str):
            return message
        parts: list[dict[str, Any]] = []
        for part in content:
            kind = part["type"]
            if kind == "video":
                parts.extend(self._video_parts(part["video"]))
            elif kind == "image":
                parts.append(
                    {
                        "type": "image_url",
                        "image_url": {"url": media.image_url_of(part["image"], self.config.image_format)},
                    }
                )
            else:
                parts.append(part)
        return {**message, "content": parts}

    def _video_parts(self, video: Any) -> list[dict[str, Any]]:
        c = self.config
        if media.is_sampled_video(video):
            return media.sampled_video_parts(video, c.video_input, c.image_format)
        if c.video_input == "video_url":
            if str(video).startswith(("http://", "https://", "data:")):
                url = str(video)
            else:
                url = media.file_as_data_url(str(video).removeprefix("file://"), "video/mp4")
            return [{"type": "video_url", "video_url": {"url": url}}]
        video = media.sample(str(video).removeprefix("file://"), c.video_sampling)
        return media.sampled_video_parts(video, c.video_input, c.image_format)

    def media_encoding(self) -> dict[str, str]:
        c = self.config
        return {"video_input": c.video_input, "image_format": c.image_format}


class _OpenAIStream(RequestStream):
    """`OpenAIBackend.open_stream`: an event loop on its own thread sends each submitted request at once.

    The server is identified, and each constraint kind probed, before the first request that needs it
    (as a batch does); the cache is read on submit and written as each result lands.
    """

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend = backend
        self.capacity = backend.config.max_concurrency
        self._extra = backend.cache_extra() if backend.cache is not None else None
        self._checked: set[str | None] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="safevid-http", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self) -> None:
        from safevid.backends.transport import TRANSPORTS

        c = self.backend.config
        headers, api_key = self.backend._headers()
        self._transport = TRANSPORTS[c.http_client](self.backend.url, headers, c.max_concurrency)
        self._sender = _Sender(self.backend, self._transport, self, api_key)
        self._check_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(c.max_concurrency)  # a deadline never counts a wait for a connection

    def retry(self) -> None:
        """`BatchHooks.retry`: retries are counted by each result's ``attempts``."""

    def submit(self, request: ChatRequest) -> concurrent.futures.Future[ChatResult]:
        key, ready = look_up(self.backend, request, self._extra)
        if ready is not None:
            future: concurrent.futures.Future[ChatResult] = concurrent.futures.Future()
            future.set_result(ready)
            return future
        return asyncio.run_coroutine_threadsafe(self._send(request, key), self._loop)

    async def _send(self, request: ChatRequest, key: str | None) -> ChatResult:
        kind = dialects.constraint_kind(request.structured) if request.structured is not None else None
        if kind not in self._checked:
            async with self._check_lock:
                if kind not in self._checked:
                    await self.backend._check_structured_outputs([request], self._transport, self._sender)
                    self._checked.add(kind)
        async with self._slots:
            result = await self._sender.send(request)
        settle(self.backend, request, key, result)
        return result

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._transport.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class _Sender:
    """Sends one request with the retry policy and turns whatever happens into a `ChatResult`."""

    def __init__(
        self, backend: OpenAIBackend, transport: Any, hooks: BatchHooks, api_key: str | None
    ) -> None:
        self.backend, self.transport, self.hooks, self.api_key = backend, transport, hooks, api_key
        self.config = backend.config

    async def send(self, request: ChatRequest) -> ChatResult:
        from safevid.backends.transport import TransportError

        c = self.config
        try:
            body = json.dumps(self.backend.build_body(request)).encode()
        except Exception as e:  # a bad media file or part fails this request, not the batch
            return self._failed(request, RequestError("invalid_request", f"{type(e).__name__}: {e}"), 0)
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                if _HAS_TIMEOUT:  # a deadline without the extra task of `wait_for`
                    async with asyncio.timeout(c.timeout_s):
                        response = await self.transport.post(body)
                else:
                    response = await asyncio.wait_for(self.transport.post(body), c.timeout_s)
            except asyncio.TimeoutError:
                error = RequestError("timeout", f"no complete response within {c.timeout_s}s")
            except TransportError as e:
                error = RequestError("connection", str(e))
            else:
                if response.status_code == 200:
                    try:
                        return _parse_completion(request, response.content, attempt)
                    except ValueError as e:
                        error = RequestError("protocol", str(e), 200)
                else:
                    error = RequestError("status", _excerpt(response.text), response.status_code)
                    if not (response.status_code in _RETRYABLE_STATUS or response.status_code >= 500):
                        return self._failed(request, error, attempt)
                    retry_after = _retry_after(response.headers)
            if attempt > c.max_retries:
                return self._failed(request, error, attempt)
            if retry_after is not None and retry_after > c.max_retry_after_s:
                error.message += f" (Retry-After {retry_after:.0f}s exceeds max_retry_after_s)"
                return self._failed(request, error, attempt)
            delay = (
                retry_after
                if retry_after is not None
                else _backoff(attempt, c.backoff_base_s, c.backoff_max_s)
            )
            logger.debug(
                "request %s attempt %d failed (%s); retrying in %.3fs",
                request.id,
                attempt,
                error.reason,
                delay,
            )
            self.hooks.retry()
            await asyncio.sleep(delay)

    def _failed(self, request: ChatRequest, error: RequestError, attempts: int) -> ChatResult:
        if self.api_key:
            error.message = redact_key(error.message, self.api_key)
        logger.debug("request %s failed after %d attempts: %s", request.id, attempts, error)
        return ChatResult(request.id, error=error, attempts=attempts)


_KEY_FRAGMENT = 8
"""Shortest run of an API key's characters that is masked: a server echoing part of the key (a prefix in an error
message, a window of it) leaks that part as surely as the whole."""


def redact_key(text: str, key: str) -> str:
    """``text`` with every run of at least `_KEY_FRAGMENT` characters of ``key`` (or the whole of a shorter key)
    replaced by ``***``.

    Example:

    ```python
    >>> redact_key("invalid key sk-abc...wxyz0123 for sk-abcdefgh", "sk-abcdefghijklmnopqrstuvwxyz0123")
    'invalid key sk-abc...*** for ***'

    ```
    """
    window = min(_KEY_FRAGMENT, len(key))
    if not window:
        return text
    fragments = {key[i : i + window] for i in range(len(key) - window + 1)}
    covered = [False] * len(text)
    for i in range(len(text) - window + 1):
        if text[i : i + window] in fragments:  # every window of a longer fragment is itself a fragment
            covered[i : i + window] = [True] * window
    out, i = [], 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append("***")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))] spreads a burst of retries."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait per ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _parse_completion(request: ChatRequest, content: bytes, attempts: int) -> ChatResult:
    """A `ChatResult` from a chat-completion body; raises `ValueError` on anything off-protocol."""
    try:
        data = json.loads(content)
    except ValueError as e:
        raise ValueError(
            f"response body is not JSON ({e}): {_excerpt(content.decode('utf-8', 'replace'))}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise ValueError(f"response has no choices: {_excerpt(json.dumps(data)[:200])}")
    choices = []
    raws = data["choices"]
    want_logprobs = request.sampling.top_logprobs is not None
    try:
        for raw in raws if len(raws) == 1 else sorted(raws, key=lambda c: c.get("index", 0)):
            text = raw["message"].get("content")
            if not isinstance(text, str):
                raise ValueError(f"choice {raw.get('index', 0)} has no text content (refusal or tool call?)")
            logprobs = None
            if want_logprobs:
                entries = (raw.get("logprobs") or {}).get("content")
                if entries is None:
                    raise ValueError("logprobs were requested but the response has none")
                logprobs = [
                    TokenLogprob(
                        e["token"],
                        float(e["logprob"]),
                        [(t["token"], float(t["logprob"])) for t in e.get("top_logprobs") or []],
                    )
                    for e in entries
                ]
            choices.append(Choice(text, raw.get("finish_reason"), logprobs))
        usage = data.get("usage") or {}
        return ChatResult(
            request.id,
            choices=choices,
            usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
            attempts=attempts,
            model=data.get("model"),
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"malformed chat completion ({type(e).__name__}: {e})") from None


def _excerpt(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


_UNREACHABLE = object()  # `_get_json`'s "nothing answered", unlike `None`: "answered, but no document"


def _answered(documents: dict[str, Any]) -> dict[str, Any]:
    return {path: None if doc is _UNREACHABLE else doc for path, doc in documents.items()}
