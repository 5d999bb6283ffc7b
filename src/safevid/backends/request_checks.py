"""What `safevid serve` accepts before any work is done: the body's JSON, each field's type and range, the ``Host``.

A request is checked the way vLLM's pydantic request model checks it, and strictly where vLLM is lax: ``"n": "40"``
is a string, not a number (OpenAI answers the same 400); ``NaN`` and ``Infinity`` are not JSON, and so refused
wherever they appear; a constraint field of the wrong shape (``response_format: "json"``, ``guided_choice: "abc"``)
is refused instead of being read as something else. A body nested deeper than `MAX_JSON_DEPTH` is refused before
any code walks it recursively. Every refusal is an `InvalidRequest`: a 4xx naming the field.

`host_allowed` is the DNS-rebinding defence: a page on ``evil.example`` whose name is rebound to 127.0.0.1 sends
``Host: evil.example``, which a server bound to loopback must not answer.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable
from typing import Any

MAX_JSON_DEPTH = 64
"""Deepest nesting of objects and arrays a request body may have: a chat request with a structured-output schema
needs a fraction of it, and a deeper body would only exercise the parser's recursion."""
_LOOPBACK_NAMES = ("localhost", "localhost.")
_WILDCARDS = ("", "0.0.0.0", "::")


class InvalidRequest(ValueError):
    """A request the server refuses: its message, the field at fault (``param``), an error code and status."""

    def __init__(self, message: str, param: str | None = None, code: str = "bad_request", status: int = 400):
        super().__init__(message)
        self.param, self.code, self.status = param, code, status

    def body(self) -> bytes:
        return error_body(str(self), self.code, param=self.param)


def error_body(message: str, code: str, *, param: str | None = None) -> bytes:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def parse_body(body: bytes) -> dict[str, Any]:
    """The request object of a chat body: strict JSON, at most `MAX_JSON_DEPTH` deep, with a ``messages`` list."""

    def refuse_constant(name: str) -> Any:
        raise InvalidRequest(f"invalid JSON body: {name} is not a JSON number")

    try:
        request = json.loads(body, parse_constant=refuse_constant)
    except RecursionError:
        raise InvalidRequest(f"invalid JSON body: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRequest(
            e.args[0] if isinstance(e, InvalidRequest) else f"invalid JSON body: {e}"
        ) from None
    if _depth(request) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"invalid JSON body: nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        raise InvalidRequest("invalid JSON body: the body must be an object with a `messages` list")
    return request


def _depth(value: Any) -> int:
    """How deeply ``value``'s objects and arrays nest (iterative: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH:  # past the limit the answer is known: stop walking
            stack.extend((child, depth + 1) for child in children)
    return deepest


def check_fields(request: dict[str, Any], *, max_n: int, max_top_logprobs: int) -> None:
    """Refuse a field of the wrong type or out of range (vLLM's request model, OpenAI's types)."""
    _typed(request, "model", str, "a string")
    _integer(request, "n", minimum=1, cap=(max_n, "--max-n"))
    for name in ("max_tokens", "max_completion_tokens"):
        _integer(request, name, minimum=1)
    _integer(request, "seed")
    _number(request, "temperature", minimum=0.0)
    _number(request, "top_p", minimum=0.0, maximum=1.0, above_minimum=True)
    for name in ("logprobs", "stream"):
        _typed(request, name, bool, "true or false")
    _integer(request, "top_logprobs", minimum=0, cap=(max_top_logprobs, "--max-top-logprobs"))
    if request.get("top_logprobs") and not request.get("logprobs"):  # vLLM's and OpenAI's rule
        raise InvalidRequest("when using `top_logprobs`, `logprobs` must be set to true", "top_logprobs")
    stop = request.get("stop")
    if stop is not None and not (isinstance(stop, str) or _strings(stop)):
        raise InvalidRequest("stop must be a string or a list of strings", "stop")
    for name in ("response_format", "structured_outputs", "stream_options"):
        _typed(request, name, dict, "an object")
    fmt = request.get("response_format")
    if fmt is not None and fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise InvalidRequest(
            f"response_format.type must be 'text', 'json_object' or 'json_schema', got {fmt.get('type')!r:.40}",
            "response_format.type",
        )
    outputs = request.get("structured_outputs") or {}
    for where, fields in (("", request), ("structured_outputs.", outputs)):
        prefix = "guided_" if not where else ""
        choice = fields.get(f"{prefix}choice")
        if choice is not None and not (_strings(choice) and choice):
            raise InvalidRequest(
                f"{where}{prefix}choice must be a non-empty list of strings", f"{where}{prefix}choice"
            )
        _typed(fields, f"{prefix}regex", str, "a string", where)
        schema = fields.get(f"{prefix}json")
        if schema is not None and not isinstance(schema, (dict, str)):
            raise InvalidRequest(f"{where}{prefix}json must be a JSON schema object", f"{where}{prefix}json")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _typed(fields: dict[str, Any], name: str, kind: type, what: str, where: str = "") -> None:
    value = fields.get(name)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequest(f"{where}{name} must be {what}, got {_shown(value)}", f"{where}{name}")


def _integer(
    request: dict[str, Any], name: str, *, minimum: int | None = None, cap: tuple[int, str] | None = None
) -> None:
    value = request.get(name)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{name} must be an integer, got {_shown(value)}", name)
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"{name} must be at least {minimum}, got {value}", name)
    if cap is not None and value > cap[0]:
        raise InvalidRequest(f"{name} = {value} exceeds this server's cap of {cap[0]} ({cap[1]})", name)


def _number(
    request: dict[str, Any],
    name: str,
    *,
    minimum: float,
    maximum: float | None = None,
    above_minimum: bool = False,
) -> None:
    value = request.get(name)
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a finite number, got {_shown(value)}", name)
    if value < minimum or (above_minimum and value == minimum) or (maximum is not None and value > maximum):
        low = f"above {minimum:g}" if above_minimum else f"at least {minimum:g}"
        bounds = f"{low} and at most {maximum:g}" if maximum is not None else low
        raise InvalidRequest(f"{name} must be {bounds}, got {value}", name)


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.40}"


def host_allowed(host_header: str | None, bind_host: str, allowed_hosts: Iterable[str] = ()) -> bool:
    """Whether a request's ``Host`` names this server as bound to ``bind_host``.

    Accepted: a name in ``allowed_hosts``; on a loopback bind, ``localhost`` and loopback addresses; on a
    wildcard bind (``0.0.0.0``, ``::``), any IP address; else the bound address itself. A DNS name not in
    ``allowed_hosts`` is refused: that is the rebinding attack's request. Ports are not compared (a proxy may
    forward under another one).
    """
    if not host_header:
        return False
    name = _host_name(host_header)
    if name in {h.lower() for h in allowed_hosts}:
        return True
    bind = bind_host.strip("[]").lower()
    if bind in _WILDCARDS:
        return name in _LOOPBACK_NAMES or _ip(name) is not None
    if _is_loopback(bind):
        return name in _LOOPBACK_NAMES or _is_loopback(name)
    address = _ip(bind)
    return name == bind or (address is not None and _ip(name) == address)


def _host_name(host_header: str) -> str:
    """The host of a ``Host`` header, without its port or IPv6 brackets, lower-case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _is_loopback(name: str) -> bool:
    address = _ip(name)
    return name in _LOOPBACK_NAMES or (address is not None and address.is_loopback)
