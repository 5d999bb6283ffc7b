"""A loopback Text Generation Inference: ``GET /info`` and TGI's reading of a chat request.

As TGI's router reads it (``router/src/lib.rs`` ``ChatRequest``, ``GrammarType``;
``router/src/validation.rs``): serde ignores unknown fields, so vLLM's and SGLang's fields are dropped
silently; ``response_format`` is the tagged enum ``{"type": "json" | "json_object" | "regex" |
"json_schema", "value": ...}`` and anything else (OpenAI's nested ``json_schema`` object) fails to
deserialize with a 422 in plain text; a JSON schema needs ``properties``; ``top_p`` must lie in
(0, 1) and ``top_logprobs`` within ``--max-top-n-tokens`` (5 by default; ``GET /info`` does not report
it); ``n`` is unused; message parts are ``text`` or ``image_url`` only. ``GET /v1/models`` names the model
as its own owner. Validation errors are 422s with ``{"error", "error_type": "validation"}``.
"""

from __future__ import annotations

import json
from typing import Any

from safevid.testing.servers.base import Constraint, DialectServer, Refused, add_json_route

_DESERIALIZE = "Failed to deserialize the JSON body into the target type: "


class TGIServer(DialectServer):
    """A loopback ``text-generation-launcher`` (see the module docstring).

    Args:
        grammar_support: `False` plays ``--disable-grammar-support``.
        max_top_n_tokens: ``--max-top-n-tokens``: the most ``top_logprobs`` it accepts.
    """

    def __init__(
        self,
        model: str = "served-model",
        *,
        grammar_support: bool = True,
        max_top_n_tokens: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        self.grammar_support = grammar_support
        self.max_top_n_tokens = max_top_n_tokens

    @property
    def owned_by(self) -> str:  # type: ignore[override]
        return self.model

    def describe(self, app: Any) -> None:
        info = {
            "model_id": self.model,
            "model_sha": None,
            "max_input_tokens": 4095,
            "max_total_tokens": 4096,
            "router": "text-generation-router",
            "version": "3.3.6",
        }
        add_json_route(app, "/info", info)

    def validate(self, body: dict[str, Any]) -> None:
        for i, message in enumerate(body.get("messages") or []):
            content = message.get("content")
            for part in content if isinstance(content, list) else []:
                if part.get("type") not in ("text", "image_url"):
                    raise Refused(
                        422,
                        f"{_DESERIALIZE}messages[{i}]: unknown variant `{part.get('type')}`, "
                        "expected `text` or `image_url`",
                    )
        top_p = body.get("top_p")
        if top_p is not None and not 0.0 < top_p < 1.0:
            raise _invalid("`top_p` must be > 0.0 and < 1.0")
        top = int(body.get("top_logprobs") or 0)
        if top > self.max_top_n_tokens:
            raise _invalid(f"`top_n_tokens` must be >= 0 and <= {self.max_top_n_tokens}. Given: {top}")

    def constraint(self, body: dict[str, Any]) -> Constraint | None:
        grammar = body.get("response_format")
        if grammar is None:
            return None
        kind = grammar.get("type") if isinstance(grammar, dict) else None
        if kind not in ("json", "json_object", "regex", "json_schema"):
            raise Refused(
                422,
                f"{_DESERIALIZE}response_format: unknown variant `{kind}`, expected one of `json`, "
                "`json_object`, `regex`, `json_schema`",
            )
        if "value" not in grammar:
            raise Refused(422, f"{_DESERIALIZE}response_format: missing field `value`")
        if not self.grammar_support:
            raise _invalid("grammar is not supported")
        value = grammar["value"]
        if kind == "regex":
            return Constraint("regex", value)
        schema = value.get("schema") if kind == "json_schema" else value
        schema = json.loads(schema) if isinstance(schema, str) else schema
        if not isinstance(schema, dict) or "properties" not in schema:
            raise _invalid("grammar is not valid: Grammar must have a 'properties' field")
        return Constraint("json", schema)


def _invalid(message: str) -> Refused:
    # As TGI's `InferError::ValidationError` displays itself (router/src/infer/mod.rs).
    return Refused(422, {"error": f"Input validation error: {message}", "error_type": "validation"})
