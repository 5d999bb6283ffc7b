"""A loopback OpenAI-compatible server: a local checkpoint behind ``/v1/chat/completions`` (``safevid serve``).

It serves a checkpoint through the transformers backend (``safevid serve <model-dir>``). The test double that
adds latency and injects faults (`safevid.testing.server.FaultInjectingServer`) is a subclass in the offline
kit, so this server stays what a user runs. Implementation: `aiohttp.web` (aiohttp is pinned for the backend's
client): its C parser handles every framing a client may send, ``client_max_size`` bounds bodies, and a client
that hangs up cancels its handler (measurements in docs/benchmarks.md).

One event loop handles all connections; model calls run one at a time in a worker thread so the
loop keeps answering, shielded from cancellation so a departed client never leaves a generation
running unlocked. `LoopbackServer` runs in a background thread (tests, ``port=0`` picks a free
port) or in the foreground (`serve_forever`, the CLI).

Accepted request fields: ``model``, ``messages`` (string content or ``text``, ``image_url`` and
``video_url`` parts: data URLs, ``data:video/jpeg;base64,<f1>,<f2>,...`` frame lists, or local
paths under ``allowed_local_media_path``), ``n``, ``max_tokens``/``max_completion_tokens``, ``temperature``, ``top_p``, ``seed``,
``stop``, ``logprobs``/``top_logprobs``, ``stream``/``stream_options`` (server-sent events,
`safevid.backends.sse`), ``response_format`` (``json_schema``, ``$defs``/``$ref`` included, or
``json_object``) and vLLM's ``structured_outputs`` (``choice``, ``json``, ``regex``) and older
``guided_choice``/``guided_json``/``guided_regex``. As in vLLM, every constraint is decoded under
(choices by `safevid.backends.constrained`, schemas and regexes by llguidance through
`safevid.backends.grammar`); a schema or regex it cannot decode under (llguidance missing, a keyword
the validator does not know) is a 400 naming what is unsupported. ``GET /v1/models`` lists the
model, ``GET /v1/models/{id}`` retrieves it.

What it refuses, as vLLM does, with a 4xx in OpenAI's error shape (``{"error": {"message", "type", "param",
"code"}}``, never a 500): local media (``file://`` URLs and bare paths) unless they resolve, symlinks and
``..`` followed, inside an ``allowed_local_media_path`` root, and remote ``http(s)`` media always (send data
URLs); ``n`` above ``max_n`` and ``top_logprobs`` above ``max_top_logprobs``; a message without a known
``role``, content or parts of the wrong type, an image or video sent to a text-only model (400); a ``model``
other than the one it serves (404, ``model_not_found``); a field of the wrong type or range, ``NaN``, a body
nested too deep (`safevid.backends.request_checks`, 400); a local media path that is not a regular file (400).
From the headers alone, before the body is read: a ``Host`` that does not name this server (400, DNS
rebinding), a chat POST that is not ``application/json`` (415), a body announced over 512 MiB (413). A
connection that does not complete its headers within ``header_timeout_s`` is closed; a body that does not
arrive within ``body_timeout_s`` is a 408. Images and video frames are down-scaled while decoded to
``max_image_pixels`` / ``max_frame_pixels`` (`safevid.backends.media.open_image`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import stat
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safevid.backends import sse
from safevid.backends.grammar import check_grammar
from safevid.backends.request_checks import InvalidRequest, check_fields, error_body, host_allowed, parse_body
from safevid.backends.structured import StructuredOutputError, check_schema
from safevid.backends.types import SamplingParams, StructuredOutput
from safevid.video.sampling import DEFAULT_MAX_PIXELS

logger = logging.getLogger(__name__)

_MAX_BODY = 512 * 1024 * 1024  # frames as data URLs make large bodies
DEFAULT_HEADER_TIMEOUT_S = 15.0
"""Seconds a connection may take to send a request's headers (or sit idle between requests) before it is closed."""
DEFAULT_BODY_TIMEOUT_S = 120.0
"""Seconds a request's body may take to arrive (512 MiB of data URLs at ~4.5 MB/s) before a 408."""
DEFAULT_MAX_IMAGE_PIXELS = 16384 * 28 * 28
"""Most pixels an image keeps (12,845,056): Qwen2-VL/2.5-VL checkpoints' image ``max_pixels``, the largest any
supported family's processor keeps; a larger image is down-scaled to it, as the processor would."""
DEFAULT_MAX_FRAME_PIXELS = DEFAULT_MAX_PIXELS
"""Most pixels a video frame keeps: `VideoSampling`'s default pixel budget (786,432, the largest of the supported
families' video processors), the one bound of build, training, evaluation and serve. A frame list's JPEGs are
decoded at reduced scale; a video file's frames are down-scaled by `sample_video` (``max_pixels``), so a
request's frames never stay at 4K."""
_SHUTDOWN_S = 2.0  # how long `stop` lets in-flight requests finish
# How long the unread body of a refused request is drained so the client reads its 4xx rather than a reset
# (aiohttp's 10 s default would let each refused 4 GB upload hold its connection that long).
_LINGER_S = 1.0
DEFAULT_MAX_N = 16
"""Most choices one request may ask for (``n``): each is a generation, so ``n`` bounds a request's cost."""
DEFAULT_MAX_TOP_LOGPROBS = 20
"""Most alternatives per token (``top_logprobs``), OpenAI's and vLLM's default cap."""
_ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass
class ServerStats:
    """Counts of what the server did: chat requests received and answered, and each fault a test double
    injected."""

    chat_requests: int = 0
    completed: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class LoopbackServer:
    """An OpenAI-compatible HTTP server on the loopback interface (see the module docstring).

    Args:
        model_dir: Checkpoint served through the transformers backend (`None` with ``backend``, or in a subclass
            that answers without a model).
        model_name: The model id reported by ``/v1/models`` and in responses (default: the folder name).
        host: Interface to bind (loopback by default).
        port: Port; ``0`` picks a free one (read `port` after `start`).
        api_key: If set, requests must carry ``Authorization: Bearer <api_key>``.
        backend_options: Extra `BackendConfig` fields for the transformers backend.
        allowed_local_media_path: Folders whose files requests may name as local media (``file://`` URLs or
            paths); without any, local media are refused. Paths are resolved (symlinks, ``..``) before the check.
        max_n: Most choices (``n``) one request may ask for.
        max_top_logprobs: Most ``top_logprobs`` one request may ask for.
        backend: A ready `Backend` to serve instead of a checkpoint (e.g. the toy world's stand-ins).
        allowed_hosts: Names besides the bound address a request's ``Host`` may give (a DNS name the server is
            reached under); any other name is refused (`safevid.backends.request_checks.host_allowed`).
        header_timeout_s: Seconds a connection may take to send its headers, or idle between requests.
        body_timeout_s: Seconds a request body may take to arrive.
        max_image_pixels: Most pixels an image keeps; larger ones are down-scaled while decoded.
        max_frame_pixels: Most pixels a video frame keeps; larger ones are down-scaled while decoded.

    Example:

    ```python
    with LoopbackServer("tiny-qwen2-vl", backend_options={"device": "cpu"}) as server:
        backend = make_backend(kind="openai", model=server.model_name, base_url=server.base_url)
    ```
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        model_name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        backend_options: dict[str, Any] | None = None,
        allowed_local_media_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        max_n: int = DEFAULT_MAX_N,
        max_top_logprobs: int = DEFAULT_MAX_TOP_LOGPROBS,
        backend: Any = None,
        allowed_hosts: Sequence[str] = (),
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.model_name = model_name or (self.model_dir.name if self.model_dir else "model")
        self.host, self.port = host, port
        self._api_key = api_key
        self._backend_options = backend_options or {}
        roots = allowed_local_media_path
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots or ())
        for root in roots:
            if not Path(root).is_dir():
                raise ValueError(f"allowed_local_media_path {str(root)!r} is not a folder")
        self.media_roots = tuple(Path(root).resolve() for root in roots)
        if max_n < 1 or max_top_logprobs < 0:
            raise ValueError(f"max_n must be >= 1 and max_top_logprobs >= 0, got {max_n}, {max_top_logprobs}")
        self.max_n, self.max_top_logprobs = max_n, max_top_logprobs
        self.allowed_hosts = tuple(allowed_hosts)
        self.header_timeout_s, self.body_timeout_s = header_timeout_s, body_timeout_s
        self.max_image_pixels, self.max_frame_pixels = max_image_pixels, max_frame_pixels
        self._backend: Any = backend
        self.stats = ServerStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._model_lock: asyncio.Lock | None = None
        self._instance = uuid.uuid4().hex[:12]
        self._ids = itertools.count()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url`` (``.../v1``)."""
        return f"{self.url}/v1"

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> LoopbackServer:
        """Load the model (if any), bind, and serve in a background thread; returns when ready."""
        self._load_backend()
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._bind())
            except BaseException as e:
                errors.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"safevid-serve-{self.model_name}", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted (the CLI)."""
        self._load_backend()

        async def main() -> None:
            await self._bind()
            logger.info("serving %s on %s", self.model_name, self.base_url)
            print(f"safevid serve: {self.model_name} on {self.base_url}", flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                await self._shutdown()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _load_backend(self) -> None:
        if self.model_dir is not None and self._backend is None:
            from safevid.backends.base import BackendConfig
            from safevid.backends.transformers_local import TransformersBackend

            options = {"cache": False, **self._backend_options}
            self._backend = TransformersBackend(
                BackendConfig(kind="transformers", model=str(self.model_dir), **options)
            )
            self._backend.load()  # a broken checkpoint fails the start, and a text-only model is known as such

    async def _bind(self) -> None:
        from aiohttp import web

        self._model_lock = asyncio.Lock()
        app = web.Application(client_max_size=_MAX_BODY)
        # The chat route first: a plain path is a dict look-up, the catch-all a regex match.
        app.router.add_route("*", "/v1/chat/completions", self._handle)
        app.router.add_route("*", "/{path:.*}", self._handle)
        # handler_cancellation: a handler whose client hung up stops (a hang fault, a client timeout).
        # keepalive_timeout also runs from the connection's start, so a client that never completes its
        # headers is closed after it.
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_S,
            keepalive_timeout=self.header_timeout_s,
            lingering_time=_LINGER_S,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=2048)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        refusal = self._refusal(request)
        if refusal is not None:  # answered before the body is read: the connection closes after it
            response = _response(*refusal)
            response.force_close()
            return response
        try:
            body = await asyncio.wait_for(request.read(), self.body_timeout_s)
        except web.HTTPRequestEntityTooLarge:
            return _response(413, error_body("request body too large", "request_too_large"))
        except TimeoutError:
            message = f"the request body did not arrive within {self.body_timeout_s:g} s"
            response = _response(408, error_body(message, "request_timeout"))
            response.force_close()
            return response
        response = await self._dispatch(request.method, request.path, request.headers, body)
        if response is None:  # a hang fault outlived its client's patience: drop the connection
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)
        status, payload, extra_headers = response
        return _response(status, payload, extra_headers)

    def _refusal(self, request: Any) -> tuple[int, bytes] | None:
        """What refuses a request from its headers alone: a foreign ``Host`` (DNS rebinding), a body announced
        over the limit, a chat POST that is not JSON (a browser's cross-origin form or text/plain post)."""
        host = request.headers.get("Host")
        if not host_allowed(host, self.host, self.allowed_hosts):
            message = (
                f"Host {host!r:.80} does not name this server (bound to {self.host}); to serve under that name, "
                "start it with --allowed-host <name>"
            )
            return 400, error_body(message, "invalid_host")
        if (request.content_length or 0) > _MAX_BODY:
            message = (
                f"request body of {request.content_length} bytes is over this server's {_MAX_BODY}-byte limit"
            )
            return 413, error_body(message, "request_too_large")
        if request.method == "POST" and request.content_type != "application/json":
            message = f"Content-Type must be application/json, got {request.content_type!r:.80}"
            return 415, error_body(message, "unsupported_media_type")
        return None

    # --- API --------------------------------------------------------------------------------------
    async def _dispatch(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]] | None:
        if self._api_key is not None and headers.get("authorization") != f"Bearer {self._api_key}":
            return 401, error_body("missing or wrong API key", "invalid_api_key"), {}
        if path in ("/health", "/v1/health"):
            return 200, b"{}", {}
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if method != "GET":
                return 405, error_body("use GET", "method_not_allowed"), {}
            card = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "safevid"}
            if path == "/v1/models":
                return 200, json.dumps({"object": "list", "data": [card]}).encode(), {}
            if path.removeprefix("/v1/models/") != self.model_name:
                message = f"The model '{path.removeprefix('/v1/models/')}' does not exist"
                return 404, error_body(message, "model_not_found"), {}
            return 200, json.dumps(card).encode(), {}
        if path != "/v1/chat/completions":
            return 404, error_body(f"no route {path}", "not_found"), {}
        if method != "POST":
            return 405, error_body("use POST", "method_not_allowed"), {}
        self.stats.chat_requests += 1
        try:
            request = parse_body(body)
        except InvalidRequest as e:
            return e.status, e.body(), {}
        model = request.get("model")
        if model is not None and model != self.model_name:
            message = f"The model '{model}' does not exist; this server serves '{self.model_name}'"
            return 404, error_body(message, "model_not_found", param="model"), {}
        return await self._chat(request)

    async def _chat(self, request: dict[str, Any]) -> tuple[int, bytes, dict[str, str]] | None:
        """Status, body and extra headers of one chat request; `None` drops the connection (a test double's
        hang)."""
        status, payload = await self._answer(request)
        headers: dict[str, str] = {}
        if status == 200 and request.get("stream"):
            payload, headers = sse.completion_events(payload, request), sse.HEADERS
        self.stats.completed += status == 200
        return status, payload, headers

    async def _answer(self, request: dict[str, Any]) -> tuple[int, bytes]:
        try:
            return await self._complete(request)
        except Exception as e:  # a model error answers 500 with its cause; the server keeps serving
            logger.exception("chat completion failed")
            return 500, error_body(f"{type(e).__name__}: {e}", "internal_error")

    async def _complete(self, request: dict[str, Any]) -> tuple[int, bytes]:
        try:
            params = self._sampling(request)
            structured = structured_from(request)
            sse.check_stream_options(request)
        except InvalidRequest as e:
            return e.status, e.body()
        except (ValueError, TypeError) as e:
            return 400, error_body(str(e), "bad_request")
        from safevid.backends.types import ChatRequest

        text_only = self._backend is not None and not getattr(self._backend, "is_vlm", True)
        try:
            messages = await asyncio.to_thread(
                _internal_messages,
                request["messages"],
                media_roots=self.media_roots,
                text_only=self.model_name if text_only else None,
                max_pixels=(self.max_image_pixels, self.max_frame_pixels),
            )
            chat = ChatRequest(messages, params, structured)
        except InvalidRequest as e:
            return e.status, e.body()
        except (ValueError, TypeError, OSError) as e:
            return 400, error_body(str(e), "bad_request")
        # Shielded: a client that hangs up cancels its handler, not a generation under way, whose
        # thread would otherwise run on, unlocked, beside the next request's.
        task = asyncio.ensure_future(self._generate_locked(chat))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        result = (await asyncio.shield(task))[0]
        if result.error is not None and result.error.kind == "invalid_request":  # the request, not the model
            return 400, error_body(result.error.message, "bad_request")
        if result.error is not None and result.error.kind != "parse":
            return 500, error_body(str(result.error), "internal_error")
        # An output that fails validation (a JSON answer cut by max_tokens) is returned as generated,
        # with its finish reason: the client's parser reports the parse failure.
        choices = [(c.text, c.finish_reason or "stop", _lp_tuples(c.logprobs)) for c in result.choices]
        return 200, self._completion_body(choices, result.usage.prompt_tokens, result.usage.completion_tokens)

    def _sampling(self, request: dict[str, Any]) -> SamplingParams:
        """The request's sampling parameters, each field checked, within this server's caps on ``n`` and
        ``top_logprobs``."""
        check_fields(request, max_n=self.max_n, max_top_logprobs=self.max_top_logprobs)
        return _sampling_from(request)

    async def _generate_locked(self, chat: Any) -> Any:
        assert self._model_lock is not None
        async with self._model_lock:  # one generation at a time: the model is not shared across threads
            return await asyncio.to_thread(self._backend.generate, [chat], progress=False)

    def _completion_body(
        self, choices: list[tuple[str, str, Any]], prompt_tokens: int, completion_tokens: int
    ) -> bytes:
        body = {
            "id": f"chatcmpl-{self._instance}-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": wire_choices(choices),
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return json.dumps(body).encode()


def wire_choices(choices: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    """``(text, finish_reason, logprobs)`` triples as the ``choices`` of an OpenAI chat completion."""
    return [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": reason,
            "logprobs": None if lps is None else {"content": [_lp_entry(t, lp, top) for t, lp, top in lps]},
        }
        for i, (text, reason, lps) in enumerate(choices)
    ]


def _lp_tuples(logprobs: Any) -> Any:
    return None if logprobs is None else [(t.token, t.logprob, t.top) for t in logprobs]


def _lp_entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode("utf-8")),
        "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode("utf-8"))} for t, v in top],
    }


_JSON_HEADERS = {"Content-Type": "application/json"}


def _response(status: int, payload: bytes, headers: dict[str, str] | None = None) -> Any:
    from aiohttp import web

    return web.Response(
        status=status, body=payload, headers={**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS
    )


def _sampling_from(request: dict[str, Any]) -> SamplingParams:
    """Sampling parameters of a request whose fields `check_fields` accepted."""
    stop = request.get("stop") or []
    temperature = request.get("temperature")
    return SamplingParams(
        max_tokens=request.get("max_completion_tokens") or request.get("max_tokens") or 256,
        temperature=1.0 if temperature is None else float(temperature),
        top_p=float(request.get("top_p") or 1.0),
        n=request.get("n") or 1,
        seed=request.get("seed"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        top_logprobs=(request.get("top_logprobs") or 0) if request.get("logprobs") else None,
    )


def structured_from(request: dict[str, Any]) -> StructuredOutput | None:
    """The structured-output constraint a chat request asks for, in any dialect serve reads (None: free text).

    Raises:
        ValueError: a constraint that is malformed or cannot be decoded under (the server answers 400).
    """
    choice = request.get("guided_choice") or (request.get("structured_outputs") or {}).get("choice")
    if choice:
        return StructuredOutput(choice=tuple(choice))
    regex = request.get("guided_regex") or (request.get("structured_outputs") or {}).get("regex")
    if regex:
        spec = StructuredOutput(regex=regex)
        check_grammar(spec)  # a GrammarUnavailableError is a ValueError: a 400 naming what is missing
        return spec
    schema = request.get("guided_json") or (request.get("structured_outputs") or {}).get("json")
    fmt = request.get("response_format")
    if schema is None and fmt is not None:  # `check_fields` accepted its type
        if fmt.get("type") == "json_schema":
            json_schema = fmt.get("json_schema")
            schema = json_schema.get("schema") if isinstance(json_schema, dict) else None
            if not isinstance(schema, dict):
                raise InvalidRequest(
                    "response_format.json_schema.schema must be an object", "response_format"
                )
        elif fmt.get("type") == "json_object":
            schema = {"type": "object"}
    if schema is None:
        return None
    try:  # reject schemas the validator cannot check, before spending a generation on them
        check_schema(schema)
    except StructuredOutputError as e:
        raise ValueError(f"response_format: {e}") from None
    spec = StructuredOutput(json_schema=schema)
    check_grammar(spec)
    return spec


def _internal_messages(
    messages: list[Any],
    *,
    media_roots: tuple[Path, ...] = (),
    text_only: str | None = None,
    max_pixels: tuple[int | None, int | None] = (None, None),
) -> list[dict[str, Any]]:
    """Wire-format messages to safevid's: images as PIL images, videos as sampled frames.

    Args:
        messages: The request's ``messages``.
        media_roots: Folders local media may come from (none: local media are refused).
        text_only: The model's name if it is a text-only model (images and videos are refused).
        max_pixels: Most pixels an image and a video frame keep (down-scaled while decoded).

    Raises:
        InvalidRequest: naming the field at fault.
    """
    from safevid.backends import media
    from safevid.backends.types import image_part, text_part, video_part

    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"{where} must be an object, got {type(message).__name__}", where)
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"{where}.role must be one of {', '.join(_ROLES)}; got {role!r}", f"{where}.role"
            )
        content = message.get("content")
        if isinstance(content, str) or content is None:
            out.append({"role": role, "content": content or ""})
            continue
        if not isinstance(content, list):
            raise InvalidRequest(
                f"{where}.content must be a string or a list of parts, got {type(content).__name__}",
                f"{where}.content",
            )
        parts = []
        for j, part in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise InvalidRequest(f"{at}.text must be a string", f"{at}.text")
                parts.append(text_part(part["text"]))
                continue
            if kind not in ("image_url", "video_url"):
                raise InvalidRequest(f"{at}: unsupported content part {part!r:.80}", f"{at}.type")
            if text_only is not None:
                raise InvalidRequest(f"{at}: {text_only} is a text-only model; it takes no {kind} parts", at)
            source = _media_source(part, kind, media_roots, f"{at}.{kind}")
            if kind == "image_url":
                parts.append(image_part(media.load_image(source, max_pixels[0])))
            else:
                parts.append(video_part(_load_video(source, max_pixels[1])))
        out.append({"role": role, "content": parts})
    return out


def _media_source(part: dict[str, Any], key: str, roots: tuple[Path, ...], param: str) -> str:
    """A media part's data URL, or the local file it names if that lies inside an allowed root."""
    value = part.get(key)
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str):
        raise InvalidRequest(f"{param} must be a URL string or {{'url': ...}}", param)
    if url.startswith("data:"):
        return url
    if url.startswith(("http://", "https://")):
        raise InvalidRequest(
            f"remote media are not fetched by this server: send a data URL ({url[:80]})", param
        )
    if url.startswith("file:"):
        parsed = urllib.parse.urlsplit(url)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidRequest(f"a file:// URL names a local path, not a host: {url[:80]}", param)
        path = urllib.parse.unquote(parsed.path)
    else:
        path = url
    if not roots:
        raise InvalidRequest(
            f"local media paths are refused ({url[:80]}): send the media as a data URL, or start the server "
            "with --allowed-local-media-path <folder>",
            param,
            "local_media_not_allowed",
        )
    resolved = Path(path).resolve()  # `..` and symlinks followed: the check is on where the file really is
    if not any(resolved.is_relative_to(root) for root in roots):
        raise InvalidRequest(
            f"{url[:80]} lies outside the allowed local media paths (--allowed-local-media-path)",
            param,
            "local_media_not_allowed",
        )
    try:
        mode = resolved.stat().st_mode
    except OSError as e:
        raise InvalidRequest(f"{url[:80]}: {e.strerror}", param) from None
    if not stat.S_ISREG(mode):  # a FIFO or a device would block the reading thread, or never end
        raise InvalidRequest(f"{url[:80]} is not a regular file", param, "local_media_not_allowed")
    return str(resolved)


def _load_video(url: str, max_pixels: int | None = None) -> Any:
    """The frames of a data URL or a local path (one `_media_source` allowed), each of at most ``max_pixels``."""
    from safevid.backends import media

    sampling = {"max_pixels": max_pixels} if max_pixels is not None else None
    if not url.startswith("data:"):
        return media.sample(url, sampling)
    mime, payload = media.decode_data_url(url)
    if isinstance(payload, list):
        return _frames_video(payload, max_pixels)
    suffix = "." + mime.split("/")[-1]
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(payload)
        f.flush()
        return media.sample(f.name, sampling)


def _frames_video(jpegs: list[bytes], max_pixels: int | None = None) -> Any:
    """Frames from a frame-list data URL. The URL carries no timing: they are taken as 1 fps."""
    import io

    import numpy as np
    import torch

    from safevid.backends.media import FrameList, open_image

    frames = np.stack([np.asarray(open_image(io.BytesIO(b), max_pixels)) for b in jpegs])
    return FrameList(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), sampled_fps=1.0)
