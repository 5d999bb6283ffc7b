"""Parse and validate structured outputs: JSON (with a schema), one of a fixed list of choices, or a regex.

Constrained decoding is not available everywhere (an OpenAI-compatible server may ignore it; the
transformers backend constrains choices but not JSON schemas), so every backend runs its text
through [`parse_structured`]. It
extracts JSON from prose or code fences, validates it against the schema, and raises
[`StructuredOutputError`] when it cannot — the caller records a parse failure, never a blank value.

The validator covers the JSON-schema subset that safevid's prompts use (``type``, ``properties``,
``required``, ``additionalProperties``, ``items``, ``enum``, ``const``, ``minimum``/``maximum``,
``minLength``/``maxLength``, ``minItems``/``maxItems``, ``pattern``, ``anyOf``/``oneOf``/``allOf``, and
``$ref`` to ``#/$defs/...`` or ``#/definitions/...``, as pydantic writes nested models); an unsupported
keyword or reference raises rather than passing silently. A regex must match the whole text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from safevid.backends.types import StructuredOutput

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
# Keywords that only annotate a schema; they never constrain values.
_ANNOTATIONS = {"title", "description", "$schema", "$id", "default", "examples", "$comment", "format"}
_DEFINITIONS = ("$defs", "definitions")
_CONSTRAINTS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    *_DEFINITIONS,
}


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


def check_schema(schema: Any, path: str = "$", root: dict[str, Any] | None = None) -> None:
    """Raise `StructuredOutputError` if ``schema`` uses keywords or references `validate` does not support."""
    if not isinstance(schema, dict):
        raise StructuredOutputError(f"schema at {path} must be an object, got {type(schema).__name__}")
    root = schema if root is None else root
    unknown = set(schema) - _CONSTRAINTS - _ANNOTATIONS
    if unknown:
        raise StructuredOutputError(f"schema at {path} uses unsupported keywords {sorted(unknown)}")
    if "$ref" in schema:
        _check_no_ref_cycle(schema, root, path)
    for definitions in _DEFINITIONS:
        for key, sub in schema.get(definitions, {}).items():
            check_schema(sub, f"{path}.{definitions}.{key}", root)
    for key, sub in schema.get("properties", {}).items():
        check_schema(sub, f"{path}.{key}", root)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            check_schema(schema[key], f"{path}.{key}", root)
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            check_schema(sub, f"{path}.{key}[{i}]", root)


def validate(value: Any, schema: dict[str, Any], path: str = "$", root: dict[str, Any] | None = None) -> None:
    """Validate ``value`` against ``schema`` (the subset in the module docstring).

    Raises:
        StructuredOutputError: with the JSON path of the first violation.
    """
    root = schema if root is None else root
    unknown = set(schema) - _CONSTRAINTS - _ANNOTATIONS
    if unknown:
        raise StructuredOutputError(f"schema at {path} uses unsupported keywords {sorted(unknown)}")
    if "$ref" in schema:
        validate(value, _resolve(schema["$ref"], root, path), path, root)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            raise StructuredOutputError(f"{path}: expected {'/'.join(types)}, got {_json_type(value)}")
    if "const" in schema and value != schema["const"]:
        raise StructuredOutputError(f"{path}: expected {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise StructuredOutputError(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_bounds(value, schema, path)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", float("inf")):
            raise StructuredOutputError(f"{path}: string length {len(value)} out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise StructuredOutputError(f"{path}: {value!r} does not match {schema['pattern']!r}")
    if isinstance(value, dict):
        _validate_object(value, schema, path, root)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", float("inf")):
            raise StructuredOutputError(f"{path}: array length {len(value)} out of bounds")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                validate(item, schema["items"], f"{path}[{i}]", root)
    for sub in schema.get("allOf", []):
        validate(value, sub, path, root)
    if "anyOf" in schema and _count_valid(value, schema["anyOf"], path, root) == 0:
        raise StructuredOutputError(f"{path}: matches none of anyOf")
    if "oneOf" in schema and _count_valid(value, schema["oneOf"], path, root) != 1:
        raise StructuredOutputError(f"{path}: must match exactly one of oneOf")


def _check_no_ref_cycle(schema: dict[str, Any], root: dict[str, Any], path: str) -> None:
    """Refuse a ``$ref`` that leads back to itself through references and ``anyOf``/``oneOf``/``allOf`` alone:
    validating against it would recurse without ever reaching a value (a recursive model's ``$ref`` inside
    ``properties`` or ``items`` is fine)."""
    stack: list[tuple[dict[str, Any], frozenset[str]]] = [(schema, frozenset())]
    while stack:
        node, chain = stack.pop()  # `chain`: the references followed to reach `node`
        if "$ref" in node:
            ref = node["$ref"]
            if ref in chain:
                raise StructuredOutputError(
                    f"schema at {path}: $ref {ref!r} refers to itself without nesting"
                )
            chain = chain | {ref}
            stack.append((_resolve(ref, root, path), chain))
        for key in ("anyOf", "oneOf", "allOf"):
            stack.extend((sub, chain) for sub in node.get(key, []) if isinstance(sub, dict))


def _resolve(ref: Any, root: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema a local ``$ref`` (``#/$defs/Name``, ``#/definitions/Name``) points to."""
    parts = ref.split("/") if isinstance(ref, str) else []
    if len(parts) != 3 or parts[0] != "#" or parts[1] not in _DEFINITIONS:
        raise StructuredOutputError(f"schema at {path}: unsupported $ref {ref!r} (only #/$defs/<name>)")
    target = root.get(parts[1], {}).get(parts[2])
    if not isinstance(target, dict):
        raise StructuredOutputError(f"schema at {path}: $ref {ref!r} points to nothing")
    return target


def _validate_object(value: dict[str, Any], schema: dict[str, Any], path: str, root: dict[str, Any]) -> None:
    properties = schema.get("properties", {})
    missing = [k for k in schema.get("required", []) if k not in value]
    if missing:
        raise StructuredOutputError(f"{path}: missing required keys {missing}")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            validate(item, properties[key], f"{path}.{key}", root)
        elif extra is False:
            raise StructuredOutputError(f"{path}: unexpected key {key!r}")
        elif isinstance(extra, dict):
            validate(item, extra, f"{path}.{key}", root)


def _check_bounds(value: float, schema: dict[str, Any], path: str) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        raise StructuredOutputError(f"{path}: {value} < minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise StructuredOutputError(f"{path}: {value} > maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        raise StructuredOutputError(f"{path}: {value} <= exclusiveMinimum {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        raise StructuredOutputError(f"{path}: {value} >= exclusiveMaximum {schema['exclusiveMaximum']}")


def _count_valid(value: Any, schemas: list[dict[str, Any]], path: str, root: dict[str, Any]) -> int:
    count = 0
    for sub in schemas:
        try:
            validate(value, sub, path, root)
        except StructuredOutputError:
            continue
        count += 1
    return count


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = {"string": str, "boolean": bool, "object": dict, "array": list, "null": type(None)}
    if name not in expected:
        raise StructuredOutputError(f"unsupported schema type {name!r}")
    return isinstance(value, expected[name])


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


def _excerpt(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
