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
        ({"score": 2}, "$: 'category' is a required property"),
        ({"score": 2, "category": "weapons"}, "$.category: 'weapons' is not one of"),
        ({"score": 2, "category": "none", "extra": 1}, "('extra' was unexpected)"),
        ({"score": "2", "category": "none"}, "$.score: '2' is not of type 'integer'"),
        (
            {"score": 2, "category": "none", "reasons": ["a", "b", "c", "d"]},
            "$.reasons: ['a', 'b', 'c', 'd'] is too long",
        ),
        ({"score": 2, "category": "none", "reasons": [""]}, "$.reasons[0]"),
    ],
)
def test_schema_violations_name_the_path(value, message):
    with pytest.raises(StructuredOutputError) as caught:
        validate(value, SCHEMA)
    assert message in str(caught.value)


def test_unparseable_text_raises_instead_of_returning_blank():
    with pytest.raises(StructuredOutputError, match="no JSON value"):
        parse_structured("I cannot help with that.", StructuredOutput(json_schema=SCHEMA))
    with pytest.raises(StructuredOutputError, match="no JSON value"):
        extract_json("")


def test_every_keyword_of_json_schema_is_checked_not_passed():
    # Keywords beyond a hand-written subset (patternProperties, if/then) are enforced, not ignored.
    schema = {"type": "object", "patternProperties": {"^a": {"type": "string"}}}
    validate({"a": "x"}, schema)
    with pytest.raises(StructuredOutputError, match=r"\$\.a: 1 is not of type 'string'"):
        validate({"a": 1}, schema)
    conditional = {"if": {"required": ["refuse"]}, "then": {"required": ["reason"]}}
    with pytest.raises(StructuredOutputError, match="'reason' is a required property"):
        validate({"refuse": True}, conditional)


def test_check_schema_refuses_an_invalid_schema_with_its_path():
    check_schema(SCHEMA)
    with pytest.raises(StructuredOutputError, match=r"schema at \$\.properties\.a\.items\.type"):
        check_schema({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "strng"}}}})
    with pytest.raises(StructuredOutputError, match="schema must be an object"):
        check_schema(["type", "object"])


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
    with pytest.raises(
        StructuredOutputError, match=r"\$\.finding\.score: 9 is greater than the maximum of 5"
    ):
        parse_structured('{"finding": {"score": 9}}', StructuredOutput(json_schema=schema))
    with pytest.raises(StructuredOutputError, match=r"\$ref '#/\$defs/Missing' does not resolve"):
        check_schema({"$ref": "#/$defs/Missing"})
    # Never fetched: a remote reference is refused when the schema is checked.
    with pytest.raises(
        StructuredOutputError, match=r"schema at \$\.properties\.x: \$ref 'https://example\.com/s\.json'"
    ):
        check_schema({"properties": {"x": {"$ref": "https://example.com/s.json"}}})


def test_a_regex_must_match_the_whole_text():
    spec = StructuredOutput(regex="[A-Z]{3}-[0-9]{2}")
    assert parse_structured("ABC-12", spec) == "ABC-12"
    with pytest.raises(StructuredOutputError, match="does not match the regex"):
        parse_structured("ABC-12 and more", spec)
    with pytest.raises(ValueError, match="exactly one"):
        StructuredOutput(regex="a", choice=("a",))
