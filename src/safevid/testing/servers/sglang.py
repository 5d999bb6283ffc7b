"""A loopback SGLang: ``owned_by: sglang`` and SGLang's reading of a chat request.

As `sglang.srt.entrypoints.openai.protocol.ChatCompletionRequest` reads it: a pydantic model with
pydantic's default of ignoring extra fields, so anything SGLang does not know (vLLM's
``structured_outputs``, ``guided_choice``) is dropped without a word. Constraints are the top-level
``regex`` and ``ebnf`` strings and ``response_format`` (``json_schema`` with a named ``json_schema``
object, or ``json_object``); one constraint per request. There is no choice constraint.
``honour_constraints=False`` plays ``--grammar-backend none``. Errors are 400s with SGLang's
``{"object": "error", "message", "type", "param", "code"}`` body.
"""

from __future__ import annotations

from typing import Any

from safevid.testing.servers.base import Constraint, DialectServer, Refused, add_json_route


class SGLangServer(DialectServer):
    """A loopback ``sglang.launch_server`` (see the module docstring)."""

    owned_by = "sglang"

    def describe(self, app: Any) -> None:
        info = {"model_path": self.model, "tokenizer_path": self.model, "is_generation": True}
        add_json_route(app, "/get_model_info", info)

    def constraint(self, body: dict[str, Any]) -> Constraint | None:
        found: list[Constraint] = []
        for key in ("regex", "ebnf"):
            value = body.get(key)
            if value is not None:
                if not isinstance(value, str):
                    raise _bad_request(f"{key}: Input should be a valid string")
                found.append(Constraint(key, value))
        response_format = body.get("response_format")
        if response_format is not None:
            kind = response_format.get("type")
            if kind not in ("text", "json_object", "json_schema", "structural_tag"):
                raise _bad_request(
                    f"response_format.type: Input should be 'text', 'json_object' or 'json_schema', got {kind!r}"
                )
            if kind == "json_schema":
                config = response_format.get("json_schema")
                if not isinstance(config, dict) or "name" not in config:
                    raise _bad_request("response_format.json_schema.name: Field required")
                found.append(Constraint("json", config.get("schema") or {}))
            elif kind == "json_object":
                found.append(Constraint("json", {"type": "object"}))
        if len(found) > 1:
            raise _bad_request("Only one of regex, json_schema, or ebnf can be set")
        if found and found[0].kind == "ebnf":
            raise _bad_request("this loopback SGLang's scripted model does not answer EBNF grammars")
        return found[0] if found else None


def _bad_request(message: str) -> Refused:
    return Refused(
        400, {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400}
    )
