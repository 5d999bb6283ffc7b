"""A loopback vLLM: ``owned_by: vllm``, ``GET /version``, and vLLM's reading of a chat request.

As `vllm.entrypoints.openai` reads it: the request model allows extra fields and only logs them, so
a field vLLM does not know is ignored with a 200. ``structured_outputs`` (`StructuredOutputsParams`)
is read from 0.10.2 on and takes exactly one of ``json``, ``regex``, ``choice``, ``grammar``,
``json_object``; ``response_format`` ``json_schema`` needs its ``json_schema`` object; the older
``guided_*`` fields are read before 0.12 only; ``top_logprobs`` is capped by ``--max-logprobs`` (20).
Errors are 400s with vLLM's ``{"error": {"message", "type", "param", "code"}}`` body.
"""

from __future__ import annotations

import json
from typing import Any

from safevid.testing.servers.base import Constraint, DialectServer, Refused, add_json_route

_KINDS = ("json", "regex", "choice", "grammar", "json_object")


class VLLMServer(DialectServer):
    """A loopback ``vllm serve`` of a given ``version`` (see the module docstring)."""

    owned_by = "vllm"

    def __init__(self, model: str = "served-model", *, version: str = "0.11.0", **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.version = version
        self._release = tuple(int(p) for p in version.split(".")[:3])

    def describe(self, app: Any) -> None:
        add_json_route(app, "/version", {"version": self.version})

    def validate(self, body: dict[str, Any]) -> None:
        if int(body.get("top_logprobs") or 0) > 20:
            raise _bad_request(f"top_logprobs must be <= 20 (--max-logprobs), got {body['top_logprobs']}")

    def constraint(self, body: dict[str, Any]) -> Constraint | None:
        found: list[Constraint] = []
        params = body.get("structured_outputs") if self._release >= (0, 10, 2) else None
        if params is not None:
            if not isinstance(params, dict):
                raise _bad_request("structured_outputs must be an object")
            set_kinds = [k for k in _KINDS if params.get(k) is not None]
            if len(set_kinds) > 1:
                raise _bad_request(
                    f"You can only use one kind of structured outputs constraint but multiple are specified: {set_kinds}"
                )
            found += [_constraint(k, params[k]) for k in set_kinds]
        if self._release < (0, 12):
            for kind in ("json", "regex", "choice"):
                if body.get(f"guided_{kind}") is not None:
                    found.append(_constraint(kind, body[f"guided_{kind}"]))
        response_format = body.get("response_format")
        if response_format is not None:
            kind = response_format.get("type")
            if kind not in ("text", "json_object", "json_schema", "structural_tag"):
                raise _bad_request(
                    f"response_format.type {kind!r} is not one of text, json_object, json_schema"
                )
            if kind == "json_schema":
                config = response_format.get("json_schema")
                if not isinstance(config, dict) or "name" not in config:
                    raise _bad_request(
                        "When response_format type is 'json_schema', the 'json_schema' field must be provided."
                    )
                found.append(Constraint("json", config.get("schema") or {}))
            elif kind == "json_object":
                found.append(Constraint("json", {"type": "object"}))
        return found[0] if found else None


def _constraint(kind: str, value: Any) -> Constraint:
    if kind == "json":
        return Constraint("json", json.loads(value) if isinstance(value, str) else value)
    if kind == "json_object":
        return Constraint("json", {"type": "object"})
    if kind == "grammar":
        raise _bad_request("this loopback vLLM's scripted model does not answer grammars")
    return Constraint(kind, value)


def _bad_request(message: str) -> Refused:
    return Refused(
        400, {"error": {"message": message, "type": "BadRequestError", "param": None, "code": 400}}
    )
