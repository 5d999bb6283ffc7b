"""Structured-output dialects of OpenAI-compatible servers, how to tell servers apart, and the probe.

Every server that says "OpenAI-compatible" constrains decoding in its own request fields, and all of
them answer a request in another server's dialect with a 200 and unconstrained text (vLLM and SGLang
drop unknown fields; TGI ignores them too). So the backend speaks each server's own form:

| dialect  | choice                                   | JSON schema                                           |
|----------|------------------------------------------|-------------------------------------------------------|
| `vllm`   | ``structured_outputs: {choice: [...]}``  | ``structured_outputs: {json: schema}`` (vLLM >= 0.10.2) |
| `sglang` | ``regex`` (the choices' alternation)     | ``response_format: {type: json_schema, json_schema}`` |
| `tgi`    | ``response_format: {type: regex, value}``| ``response_format: {type: json, value: schema}``      |
| `openai` | none (the API has no choice constraint)  | ``response_format`` json_schema with ``strict: true`` |

A regex goes where a choice does, as a regex (vLLM: ``structured_outputs.regex``); OpenAI has none.

``auto`` identifies the server from what it says about itself (`identify`): ``owned_by`` in
``GET /v1/models`` (``vllm``, ``sglang``, ``safevid``), vLLM's ``GET /version``, TGI's ``GET /info``
(``router: text-generation-router``), OpenAI's host. TGI also refuses ``top_p: 1.0`` (it wants
``0 < top_p < 1``) and ignores ``n``, so its dialect leaves ``top_p`` out when it is 1 and refuses
``n > 1`` before sending.

A server can still accept a dialect and not honour it (vLLM 0.10.0-0.10.1 ignore
``structured_outputs``; SGLang started with ``--grammar-backend none``). `probe_request` builds one
request whose only acceptable answers are strings no model says unprompted, and `check_probe` turns an
answer outside them into a `StructuredOutputsNotHonouredError` naming the server, the dialect and the fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version

from safevid.backends.structured import StructuredOutputError, validate
from safevid.backends.types import ChatRequest, ChatResult, SamplingParams, StructuredOutput

Dialect = Literal["vllm", "sglang", "tgi", "openai", "none"]
DIALECTS: tuple[str, ...] = ("auto", "vllm", "sglang", "tgi", "openai", "none")

VLLM_MIN_VERSION = (0, 10, 2)  # the first release that reads `structured_outputs`

_REGEX_META = set("\\.^$*+?{}[]|()/")
_PROBE_QUESTION = "What is the capital of France? Answer in one word."
_PROBE_CHOICES = ("zq-probe-7319", "zq-probe-2864")
_PROBE_REGEX = "zq-probe-[0-9]{4}"
_PROBE_SCHEMA = {
    "type": "object",
    "properties": {"probe": {"type": "string", "enum": ["zq-probe-7319"]}},
    "required": ["probe"],
    "additionalProperties": False,
}

_FIXES = {
    "vllm": "run vLLM >= 0.10.2 with structured outputs enabled",
    "sglang": "start SGLang with a grammar backend (`--grammar-backend xgrammar`, not `none`)",
    "tgi": "start TGI without `--disable-grammar-support`",
    "openai": "OpenAI's API has no choice or regex constraint: use a server that has one (vLLM, SGLang, TGI)",
    "safevid": "install the `constrained` extra where `safevid serve` runs (`pip install 'safevid[constrained]'`)",
}
_NONE_FIX = "or set `structured_outputs: none` to send no constraint and parse answers as they come"


class StructuredOutputsNotHonouredError(RuntimeError):
    """The server refused or ignored the structured-output constraint in the dialect sent to it."""


@dataclass(frozen=True)
class ServerIdentity:
    """What a server said about itself: its kind, version when it gives one, and its dialect.

    Args:
        server: ``vllm``, ``sglang``, ``tgi``, ``openai`` or ``safevid`` (``safevid serve``).
        dialect: The structured-output dialect it reads.
        version: Its version string, where it tells one.
    """

    server: str
    dialect: Dialect
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.server} {self.version}" if self.version else self.server


def root_url(base_url: str) -> str:
    """The server root of an OpenAI ``base_url`` (``http://h:8000/v1`` -> ``http://h:8000``)."""
    base = base_url.rstrip("/")
    return base.removesuffix("/v1")


def identify(base_url: str, documents: dict[str, Any]) -> ServerIdentity:
    """Identify the server at ``base_url`` from the JSON it served at ``/v1/models``, ``/version`` and
    ``/info`` (``documents`` maps those paths to the parsed body, or `None` where there was none).

    Raises:
        StructuredOutputsNotHonouredError: for a vLLM older than 0.10.2, or a server it cannot tell.
    """
    models = documents.get("/v1/models")
    owners = {m.get("owned_by") for m in (models or {}).get("data", []) if isinstance(m, dict)}
    if "vllm" in owners:
        version = (documents.get("/version") or {}).get("version")
        release = _release(version) if version is not None else None
        if release is not None and release < VLLM_MIN_VERSION:
            raise StructuredOutputsNotHonouredError(
                f"the server at {base_url} is vLLM {version}, which ignores `structured_outputs` (read "
                "from vLLM 0.10.2 on): upgrade vLLM to >= 0.10.2, " + _NONE_FIX
            )
        return ServerIdentity("vllm", "vllm", version)
    if "sglang" in owners:
        return ServerIdentity("sglang", "sglang")
    if "safevid" in owners:
        return ServerIdentity("safevid", "vllm")
    info = documents.get("/info") or {}
    if info.get("router") == "text-generation-router" or {"model_id", "max_total_tokens"} <= set(info):
        return ServerIdentity("tgi", "tgi", info.get("version"))
    if urlsplit(base_url).hostname == "api.openai.com" or owners & {"openai", "system", "openai-internal"}:
        return ServerIdentity("openai", "openai")
    seen = sorted(str(o) for o in owners) or "no model list"
    raise StructuredOutputsNotHonouredError(
        f"cannot tell which server runs at {base_url} (GET /v1/models owned_by: {seen}; no vLLM /version, "
        "no TGI /info): set `structured_outputs` to vllm, sglang, tgi or openai for its dialect, " + _NONE_FIX
    )


def constraint_kind(spec: StructuredOutput) -> Literal["choice", "json", "regex"]:
    """Which kind of constraint ``spec`` is (each kind is probed once per server)."""
    return "choice" if spec.choice else "regex" if spec.regex is not None else "json"


def constraint_fields(dialect: Dialect, spec: StructuredOutput) -> dict[str, Any]:
    """The request-body fields that express ``spec`` in ``dialect`` (empty where it has no form)."""
    regex = choice_regex(spec.choice) if spec.choice else spec.regex
    if dialect == "vllm":
        if spec.choice:
            return {"structured_outputs": {"choice": list(spec.choice)}}
        return {"structured_outputs": {"regex": regex} if regex is not None else {"json": spec.json_schema}}
    if dialect == "sglang":
        if regex is not None:
            return {"regex": regex}
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": spec.name, "schema": spec.json_schema},
            }
        }
    if dialect == "tgi":
        if regex is not None:
            return {"response_format": {"type": "regex", "value": regex}}
        return {"response_format": {"type": "json", "value": spec.json_schema}}
    if dialect == "openai" and spec.json_schema is not None:
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": spec.name, "schema": spec.json_schema, "strict": True},
            }
        }
    return {}


def adapt_sampling(dialect: Dialect, body: dict[str, Any]) -> None:
    """Fit the sampling fields of ``body`` to what the server accepts (TGI: see the module docstring)."""
    if dialect != "tgi":
        return
    if body.get("top_p") == 1.0:
        del body["top_p"]  # TGI refuses 1.0 with a 422; leaving it out means the same: no nucleus cut
    if body.get("n", 1) > 1:
        raise ValueError(
            f"TGI generates one choice per request (it ignores `n`), got n={body['n']}: send n requests"
        )


def choice_regex(choices: tuple[str, ...] | list[str]) -> str:
    """A regex matching exactly one of ``choices``, escaping only what every regex engine treats as
    special (Python's `re.escape` escapes more, which some engines refuse)."""
    return "(" + "|".join("".join("\\" + c if c in _REGEX_META else c for c in s) for s in choices) + ")"


def expressible(dialect: Dialect, spec: StructuredOutput) -> bool:
    """Whether ``dialect`` has a request field for ``spec``'s kind of constraint."""
    return dialect != "none" and bool(constraint_fields(dialect, spec))


def probe_request(kind: Literal["choice", "json", "regex"]) -> ChatRequest:
    """A request whose only constrained answers are strings a model never gives to its question."""
    spec = {
        "choice": StructuredOutput(choice=_PROBE_CHOICES, name="probe"),
        "json": StructuredOutput(json_schema=_PROBE_SCHEMA, name="probe"),
        "regex": StructuredOutput(regex=_PROBE_REGEX, name="probe"),
    }[kind]
    sampling = SamplingParams(max_tokens=32 if kind == "json" else 16, temperature=0.0)
    return ChatRequest(
        [{"role": "user", "content": _PROBE_QUESTION}], sampling, spec, id=f"structured-probe-{kind}"
    )


def check_probe(identity: ServerIdentity, base_url: str, request: ChatRequest, result: ChatResult) -> None:
    """Raise `StructuredOutputsNotHonouredError` unless ``result`` answers the probe within its constraint."""
    spec = request.structured
    assert spec is not None
    what = f"{identity} at {base_url} (structured_outputs dialect {identity.dialect!r})"
    fix = f"{_FIXES.get(identity.server, _FIXES[identity.dialect])}, {_NONE_FIX}"
    if not result.ok:
        raise StructuredOutputsNotHonouredError(
            f"{what} refused a constrained probe request ({result.error}): {fix}"
        )
    text = result.choices[0].text.strip()
    if spec.choice is not None:
        honoured = text in spec.choice
    elif spec.regex is not None:
        honoured = re.fullmatch(spec.regex, text) is not None
    else:
        try:
            validate(json.loads(text), spec.json_schema or {})
            honoured = True
        except (ValueError, StructuredOutputError):
            honoured = False
    if not honoured:
        allowed = (
            list(spec.choice)
            if spec.choice
            else f"text matching {spec.regex!r}"
            if spec.regex is not None
            else "JSON matching " + json.dumps(spec.json_schema)
        )
        raise StructuredOutputsNotHonouredError(
            f"{what} ignored the constraint: a probe that allows only {allowed} got {text[:80]!r}: {fix}"
        )


def unexpressible_error(
    identity: ServerIdentity, base_url: str, spec: StructuredOutput
) -> StructuredOutputsNotHonouredError:
    """The error for a constraint the identified server cannot express, naming the fix for that server."""
    kind = {"choice": "choice", "json": "JSON schema", "regex": "regex"}[constraint_kind(spec)]
    return StructuredOutputsNotHonouredError(
        f"{identity} at {base_url} has no {kind} constraint in the {identity.dialect!r} dialect: "
        f"{_FIXES.get(identity.server, _FIXES[identity.dialect])}, {_NONE_FIX}"
    )


def _release(version: str) -> tuple[int, ...] | None:
    """The release numbers of a version string (``0.10.2rc1+cu128`` -> ``(0, 10, 2)``); None if not PEP 440."""
    try:
        return Version(version).release
    except InvalidVersion:
        return None
