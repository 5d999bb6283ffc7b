"""Structured-output parsing: JSON extraction, schema validation, choices; failures are errors, never blanks."""

from __future__ import annotations

import pytest

from safevid.backends import StructuredOutput, StructuredOutputError, extract_json, parse_structured, validate
from safevid.backends.structured import check_schema, parse_choice

SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "category": {"type": "string", "enum": ["violence", "none"]},
        "reasons": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 3},
    },
    "required": ["score", "category"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "text",
    [
        '{"score": 2, "category": "none"}',
        'Sure! Here is the result:\n```json\n{"score": 2, "category": "none"}\n```\nHope it helps.',
        'The verdict is {"score": 2, "category": "none"} as requested.',
        'Broken {"score": } first, then {"score": 2, "category": "none"}',
    ],
)
def test_extracts_json_from_prose_and_fences(text):
    assert parse_structured(text, StructuredOutput(json_schema=SCHEMA)) == {"score": 2, "category": "none"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"score": 7, "category": "none"}, "maximum"),
        ({"score": 2}, "missing required keys ['category']"),
        ({"score": 2, "category": "weapons"}, "not one of"),
        ({"score": 2, "category": "none", "extra": 1}, "unexpected key 'extra'"),
        ({"score": "2", "category": "none"}, "$.score: expected integer, got string"),
        ({"score": 2, "category": "none", "reasons": ["a", "b", "c", "d"]}, "array length"),
        ({"score": 2, "category": "none", "reasons": [""]}, "$.reasons[0]"),
    ],
)
def test_schema_violations_name_the_path(value, message):
    with pytest.raises(StructuredOutputError, match=message.replace("[", r"\[").replace("$", r"\$")):
        validate(value, SCHEMA)


def test_unparseable_text_raises_instead_of_returning_blank():
    with pytest.raises(StructuredOutputError, match="no JSON value"):
        parse_structured("I cannot help with that.", StructuredOutput(json_schema=SCHEMA))
    with pytest.raises(StructuredOutputError, match="no JSON value"):
        extract_json("")


def test_unsupported_schema_keyword_is_an_error_not_a_pass():
    with pytest.raises(StructuredOutputError, match="unsupported keywords"):
        validate({"a": 1}, {"type": "object", "patternProperties": {"^a": {"type": "string"}}})


def test_check_schema_walks_nested_schemas():
    from safevid.backends.structured import check_schema

    check_schema(SCHEMA)
    with pytest.raises(StructuredOutputError, match=r"\$\.a\.items uses unsupported keywords \['if'\]"):
        check_schema({"type": "object", "properties": {"a": {"type": "array", "items": {"if": {}}}}})


def test_any_of_one_of():
    schema = {"oneOf": [{"type": "integer"}, {"type": "string"}]}
    validate(3, schema)
    with pytest.raises(StructuredOutputError):
        validate(None, schema)
    validate(None, {"anyOf": [{"type": "null"}, {"type": "string"}]})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", "3"), (" 3.\n", "3"), ('"unsafe"', "unsafe"), ("Score: 4", "4"), ("UNSAFE", "unsafe")],
)
def test_choice_parsing(text, expected):
    assert parse_choice(text, ["1", "2", "3", "4", "5", "unsafe"]) == expected


@pytest.mark.parametrize("text", ["between 2 and 3", "no digits here", ""])
def test_ambiguous_or_absent_choice_fails(text):
    with pytest.raises(StructuredOutputError):
        parse_choice(text, ["1", "2", "3"])


def test_structured_output_spec_validation():
    with pytest.raises(ValueError, match="exactly one"):
        StructuredOutput()
    with pytest.raises(ValueError, match="exactly one"):
        StructuredOutput(json_schema={}, choice=("a",))
    assert StructuredOutput(choice=["a", "b"]).choice == ("a", "b")


def test_refs_to_definitions_are_followed_and_checked():
    schema = {
        "$defs": {"Finding": {"type": "object", "properties": {"score": {"type": "integer", "maximum": 5}}}},
        "type": "object",
        "properties": {"finding": {"$ref": "#/$defs/Finding"}},
        "required": ["finding"],
    }
    check_schema(schema)
    assert parse_structured('{"finding": {"score": 3}}', StructuredOutput(json_schema=schema))
    with pytest.raises(StructuredOutputError, match=r"\$\.finding\.score: 9 > maximum 5"):
        parse_structured('{"finding": {"score": 9}}', StructuredOutput(json_schema=schema))
    with pytest.raises(StructuredOutputError, match="points to nothing"):
        check_schema({"$ref": "#/$defs/Missing"})
    with pytest.raises(StructuredOutputError, match=r"unsupported \$ref 'https://example\.com/s\.json'"):
        check_schema({"$ref": "https://example.com/s.json"})


def test_a_regex_must_match_the_whole_text():
    spec = StructuredOutput(regex="[A-Z]{3}-[0-9]{2}")
    assert parse_structured("ABC-12", spec) == "ABC-12"
    with pytest.raises(StructuredOutputError, match="does not match the regex"):
        parse_structured("ABC-12 and more", spec)
    with pytest.raises(ValueError, match="exactly one"):
        StructuredOutput(regex="a", choice=("a",))
