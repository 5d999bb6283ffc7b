"""What the loopback dialect servers share: an aiohttp app on a thread, a scripted model, chat replies.

A subclass declares how its real server describes itself (extra GET routes) and how that server reads
a chat request: `constraint` returns the constraint the real server would apply, `None` where the real
server would drop or ignore what was sent, or raises `Refused` with the status and body the real
server answers. The scripted model then answers like any model would: `free_answer` without a
constraint, and the first answer the constraint allows with one.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from safevid.backends.request_checks import host_allowed
from safevid.backends.server import DEFAULT_BODY_TIMEOUT_S, DEFAULT_HEADER_TIMEOUT_S

FREE_ANSWER = "Paris is the capital of France."


class Refused(Exception):
    """The real server refuses the request: ``status`` and the body it answers with (JSON or text)."""

    def __init__(self, status: int, body: dict[str, Any] | str) -> None:
        super().__init__(body)
        self.status, self.body = status, body


@dataclass(frozen=True)
class Constraint:
    """A constraint the server applies: ``kind`` is ``choice``, ``regex`` or ``json``."""

    kind: str
    value: Any


class DialectServer:
    """An OpenAI-compatible chat server on 127.0.0.1 that reads requests like one real server.

    Args:
        model: The served model id.
        free_answer: What the scripted model says when nothing constrains it.
        honour_constraints: `False` plays a server that accepts constraints and ignores them
            (SGLang with ``--grammar-backend none``, a server behind a proxy that strips fields).

    Every chat request body received is kept in ``requests``, in order.
    """

    owned_by: ClassVar[str] = "unknown"
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    """Seconds a connection may take to send its headers (or idle) before it is closed."""

    def __init__(
        self, model: str = "served-model", *, free_answer: str = FREE_ANSWER, honour_constraints: bool = True
    ) -> None:
        self.model = model
        self.free_answer = free_answer
        self.honour_constraints = honour_constraints
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- what subclasses declare --------------------------------------------------------------------
    def describe(self, app: Any) -> None:
        """Add the GET routes through which the real server says what it is."""

    def constraint(self, body: dict[str, Any]) -> Constraint | None:
        """The constraint the real server reads from ``body`` (see the module docstring)."""
        raise NotImplementedError

    def validate(self, body: dict[str, Any]) -> None:
        """Raise `Refused` where the real server refuses the sampling fields or message parts."""

    def model_list(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": self.owned_by}],
        }

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> DialectServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._bind())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"{type(self).__name__}", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError(f"{type(self).__name__} did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> DialectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _bind(self) -> None:
        from aiohttp import web

        @web.middleware
        async def check_host(request: Any, handler: Any) -> Any:  # as `safevid serve`: no DNS rebinding
            if not host_allowed(request.headers.get("Host"), "127.0.0.1"):
                return web.json_response({"error": "Host does not name this server"}, status=400)
            return await handler(request)

        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[check_host])
        add_json_route(app, "/v1/models", self.model_list())
        app.router.add_post("/v1/chat/completions", self._chat)
        self.describe(app)
        # keepalive_timeout also closes a connection whose headers never complete (a half-open socket).
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.header_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # --- chat ------------------------------------------------------------------------------------------
    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        try:
            body = json.loads(await asyncio.wait_for(request.read(), DEFAULT_BODY_TIMEOUT_S))
        except TimeoutError:
            return web.json_response({"error": "request body timed out"}, status=408)
        except ValueError as e:
            return web.json_response({"error": f"invalid JSON: {e}"}, status=400)
        self.requests.append(body)
        try:
            self.validate(body)
            constraint = self.constraint(body)
        except Refused as e:
            if isinstance(e.body, str):
                return web.Response(text=e.body, status=e.status)
            return web.json_response(e.body, status=e.status)
        text = self.answer(constraint if self.honour_constraints else None)
        return web.json_response(self._completion(body, text))

    def answer(self, constraint: Constraint | None) -> str:
        """The scripted model: free text, or the first answer ``constraint`` allows."""
        if constraint is None:
            return self.free_answer
        if constraint.kind == "choice":
            return constraint.value[0]
        if constraint.kind == "regex":
            return first_alternative(constraint.value)
        return json.dumps(schema_instance(constraint.value))

    def _completion(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        logprobs = None
        if body.get("logprobs"):
            k = int(body.get("top_logprobs") or 0)
            alternatives = [{"token": text, "logprob": 0.0}] + [
                {"token": f"<alt{i}>", "logprob": -10.0 - i} for i in range(max(0, k - 1))
            ]
            logprobs = {"content": [{"token": text, "logprob": 0.0, "top_logprobs": alternatives[:k]}]}
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": logprobs,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
        }


def add_json_route(app: Any, path: str, document: dict[str, Any]) -> None:
    """Serve ``document`` at ``GET path``."""
    from aiohttp import web

    async def handler(_: Any) -> Any:
        return web.json_response(document)

    app.router.add_get(path, handler)


def first_alternative(regex: str) -> str:
    """The first string of a regex of the form ``(lit|lit|...)`` with backslash-escaped literals:
    the form safevid sends choices in. Any other regex is a `ValueError` (a limit of this double)."""
    if not (regex.startswith("(") and regex.endswith(")")):
        raise ValueError(f"the scripted model only answers `(a|b|...)` regexes, got {regex!r}")
    out, escaped = [], False
    for char in regex[1:-1]:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            break
        elif char in "()[]{}*+?.^$":
            raise ValueError(f"the scripted model only answers alternations of literals, got {regex!r}")
        else:
            out.append(char)
    return "".join(out)


def schema_instance(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """The simplest JSON value valid under ``schema`` (enums and consts first, then the type's
    smallest value; objects with their required properties; ``$ref`` into ``$defs``)."""
    defs = schema.get("$defs", defs or {})
    if "$ref" in schema:
        return schema_instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return schema_instance(schema[key][0], defs)
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        props = schema.get("properties", {})
        return {k: schema_instance(props.get(k, {}), defs) for k in schema.get("required", [])}
    if kind == "array":
        return [schema_instance(schema.get("items", {}), defs) for _ in range(schema.get("minItems", 0))]
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "string":
        return "x" * schema.get("minLength", 0)
    return {"boolean": False, "null": None}[kind]
