"""A loopback OpenAI API: the platform's strict reading of a chat request.

Unlike the open-source servers, OpenAI's API refuses a parameter it does not know (``400
Unrecognized request argument supplied: structured_outputs``). It constrains only JSON, through
``response_format`` ``json_schema``; with ``strict: true`` the schema must close every object
(``additionalProperties: false``) and require every property, and the answer then follows it;
without ``strict`` the schema is a hint the scripted model does not follow. There is no choice or
regex constraint. ``owned_by`` is ``system`` as on the platform.
"""

from __future__ import annotations

from typing import Any

from safevid.testing.servers.base import Constraint, DialectServer, Refused

_PARAMETERS = {
    "messages", "model", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
    "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "n",
    "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "reasoning_effort",
    "response_format", "safety_identifier", "seed", "service_tier", "stop", "store", "stream",
    "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
    "verbosity", "web_search_options",
}  # fmt: skip


class OpenAIServer(DialectServer):
    """A loopback ``api.openai.com/v1`` (see the module docstring)."""

    owned_by = "system"

    def validate(self, body: dict[str, Any]) -> None:
        unknown = sorted(set(body) - _PARAMETERS)
        if unknown:
            raise _invalid(f"Unrecognized request argument supplied: {', '.join(unknown)}", None)

    def constraint(self, body: dict[str, Any]) -> Constraint | None:
        response_format = body.get("response_format")
        if response_format is None or response_format.get("type") == "text":
            return None
        if response_format.get("type") == "json_object":
            return None  # valid JSON of any shape: nothing this double checks
        if response_format.get("type") != "json_schema":
            raise _invalid(f"Invalid value: '{response_format.get('type')}'.", "response_format.type")
        config = response_format.get("json_schema") or {}
        if "name" not in config:
            raise _invalid(
                "Missing required parameter: 'response_format.json_schema.name'.", "response_format"
            )
        schema = config.get("schema") or {}
        if not config.get("strict"):
            return None
        problem = _strict_problem(schema, "")
        if problem:
            raise _invalid(
                f"Invalid schema for response_format '{config['name']}': {problem}", "response_format"
            )
        return Constraint("json", schema)


def _strict_problem(schema: dict[str, Any], path: str) -> str | None:
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            return f"In context=({path}), 'additionalProperties' is required to be supplied and to be false."
        missing = sorted(set(schema.get("properties", {})) - set(schema.get("required", [])))
        if missing:
            return (
                f"In context=({path}), 'required' is required to include every property; missing {missing}."
            )
        for key, sub in schema.get("properties", {}).items():
            if problem := _strict_problem(sub, f"{path}.{key}".lstrip(".")):
                return problem
    if isinstance(schema.get("items"), dict):
        return _strict_problem(schema["items"], f"{path}[]")
    return None


def _invalid(message: str, param: str | None) -> Refused:
    return Refused(
        400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    )
