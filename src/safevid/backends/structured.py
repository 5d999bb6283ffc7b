"""Parse and validate structured outputs: JSON (with a schema), one of a fixed list of choices, or a regex.

Constrained decoding is not available everywhere (an OpenAI-compatible server may ignore it; the
transformers backend constrains choices but not JSON schemas), so every backend runs its text
through [`parse_structured`]. It
extracts JSON from prose or code fences, validates it against the schema, and raises
[`StructuredOutputError`] when it cannot — the caller records a parse failure, never a blank value.

Schemas are JSON Schema draft 2020-12, validated by ``jsonschema``; ``$ref`` resolves within the schema
itself (``#/$defs/...`` as pydantic writes nested models, ``#/definitions/...``) and never over the network: a
reference to anything else is refused when the schema is checked. A regex must match the whole text.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from safevid.backends.types import StructuredOutput

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


# Keywords that only annotate a schema; they never constrain values.
class StructuredOutputError(ValueError):
    """The text does not hold a value that satisfies the structured-output spec."""


def parse_structured(text: str, spec: StructuredOutput) -> Any:
    """Parse ``text`` per ``spec``: the validated JSON value, or the matching choice string.

    Raises:
        StructuredOutputError: naming what is wrong (no JSON found, schema violation, no choice).
    """
    if spec.choice is not None:
        return parse_choice(text, spec.choice)
    if spec.regex is not None:
        if re.fullmatch(spec.regex, text) is None:
            raise StructuredOutputError(f"text does not match the regex {spec.regex!r}: {_excerpt(text)}")
        return text
    value = extract_json(text)
    validate(value, spec.json_schema or {})
    return value


def parse_choice(text: str, choices: tuple[str, ...] | list[str]) -> str:
    """Return the choice that ``text`` states: an exact match after trimming quotes and punctuation,
    else the only choice present as a whole word. Ambiguous or absent choices raise."""
    cleaned = text.strip().strip("\"'`*.").strip()
    for choice in choices:
        if cleaned == choice:
            return choice
    lowered = {c.lower(): c for c in choices}
    if cleaned.lower() in lowered:
        return lowered[cleaned.lower()]
    found = [c for c in choices if re.search(rf"(?<!\w){re.escape(c)}(?!\w)", text, re.IGNORECASE)]
    if len(found) == 1:
        return found[0]
    what = "several choices" if found else "no choice"
    raise StructuredOutputError(f"text names {what} of {list(choices)}: {_excerpt(text)}")


def extract_json(text: str) -> Any:
    """The JSON value in ``text``: the whole text, else a fenced block, else the first balanced
    ``{...}``/``[...]`` that parses."""
    stripped = text.strip()
    candidates = [stripped, *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                continue
            return value
    raise StructuredOutputError(f"no JSON value found in the text: {_excerpt(text)}")


def check_schema(schema: Any) -> None:
    """Raise `StructuredOutputError` unless ``schema`` is a valid JSON schema whose every ``$ref`` resolves inside it."""
    if not isinstance(schema, dict):
        raise StructuredOutputError(f"schema must be an object, got {type(schema).__name__}")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        raise StructuredOutputError(f"schema at {e.json_path}: {e.message}") from None
    resolver = Registry().resolver_with_root(
        Resource.from_contents(schema, default_specification=DRAFT202012)
    )
    refs = list(_refs(schema, "$"))
    for path, ref in refs:
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise StructuredOutputError(
                f"schema at {path}: $ref {ref!r} does not resolve inside the schema (only local references, "
                "such as #/$defs/<name>, are followed)"
            ) from None
    for path, ref in refs:
        _check_no_ref_cycle(ref, resolver, path)


def _check_no_ref_cycle(ref: str, resolver: Any, path: str) -> None:
    """Refuse a ``$ref`` that leads back to itself through references and ``anyOf``/``oneOf``/``allOf`` alone:
    validating against it would recurse without ever reaching a value (a recursive model's ``$ref`` inside
    ``properties`` or ``items`` is fine)."""
    stack: list[tuple[Any, frozenset[str]]] = [({"$ref": ref}, frozenset())]
    while stack:
        node, chain = stack.pop()  # `chain`: the references followed to reach `node`
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("$ref"), str):
            target = node["$ref"]
            if target in chain:
                raise StructuredOutputError(
                    f"schema at {path}: $ref {target!r} refers to itself without nesting"
                )
            chain = chain | {target}
            stack.append((resolver.lookup(target).contents, chain))
        for key in ("anyOf", "oneOf", "allOf"):
            subschemas = node.get(key)
            if isinstance(subschemas, list):
                stack.extend((sub, chain) for sub in subschemas)


def validate(value: Any, schema: dict[str, Any]) -> None:
    """Validate ``value`` against ``schema`` (checked first with `check_schema`).

    Raises:
        StructuredOutputError: with the JSON path of the first violation.
    """
    error = best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(value))
    if error is not None:
        raise StructuredOutputError(f"{error.json_path}: {error.message}")


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Draft202012Validator:
    """A checked validator per schema: a run validates thousands of answers against the same few schemas."""
    schema = json.loads(schema_json)
    check_schema(schema)
    return Draft202012Validator(schema)


def _refs(schema: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every ``$ref`` in ``schema`` with the JSON path of the schema holding it."""
    if isinstance(schema, dict):
        if isinstance(schema.get("$ref"), str):
            yield path, schema["$ref"]
        for key, sub in schema.items():
            yield from _refs(sub, f"{path}.{key}")
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            yield from _refs(sub, f"{path}[{i}]")


def _excerpt(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
