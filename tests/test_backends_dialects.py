"""Structured-output dialects against loopback servers that read requests like vLLM, SGLang, TGI and OpenAI."""

from __future__ import annotations

import pytest

from safevid.backends import ChatRequest, SamplingParams, StructuredOutput, make_backend
from safevid.backends.dialects import StructuredOutputsNotHonouredError, choice_regex
from safevid.judge import RISK_CHOICES, Judge, JudgeItem
from safevid.testing.servers import FREE_ANSWER, OpenAIServer, SGLangServer, TGIServer, VLLMServer

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["safe", "unsafe"]}, "score": {"type": "integer"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}


def _backend(server, tmp_path, **overrides):
    options = {
        "kind": "openai",
        "model": server.model,
        "base_url": server.base_url,
        "cache_dir": str(tmp_path),
    }
    return make_backend(**{**options, **overrides})


def _choice(*choices: str) -> ChatRequest:
    return ChatRequest(
        [{"role": "user", "content": "Rate the risk."}],
        SamplingParams(max_tokens=4, top_logprobs=5),
        StructuredOutput(choice=choices or RISK_CHOICES),
    )


def _json() -> ChatRequest:
    return ChatRequest(
        [{"role": "user", "content": "Label it."}], structured=StructuredOutput(json_schema=SCHEMA)
    )


def _chat_bodies(server):
    """The bodies the server received, the probe's apart."""
    probes = [b for b in server.requests if "capital of France" in str(b["messages"])]
    return probes, [b for b in server.requests if b not in probes]


@pytest.mark.parametrize(
    ("server_class", "choice_field", "json_field"),
    [
        (VLLMServer, {"structured_outputs": {"choice": ["1", "2", "3", "4", "5"]}}, "structured_outputs"),
        (SGLangServer, {"regex": "(1|2|3|4|5)"}, "response_format"),
        (TGIServer, {"response_format": {"type": "regex", "value": "(1|2|3|4|5)"}}, "response_format"),
    ],
)
def test_auto_speaks_each_servers_own_dialect(server_class, choice_field, json_field, tmp_path):
    with server_class() as server:
        backend = _backend(server, tmp_path)
        batch = backend.generate([_choice(), _choice(), _json()], progress=False)
    assert [r.ok for r in batch] == [True, True, True], [str(r.error) for r in batch]
    assert batch[0].parsed == "1"
    assert batch[0].choices[0].logprobs is not None
    assert batch[2].parsed == {"label": "safe", "score": 0}
    assert (
        backend.server.server
        == {"VLLMServer": "vllm", "SGLangServer": "sglang", "TGIServer": "tgi"}[server_class.__name__]
    )
    probes, bodies = _chat_bodies(server)
    assert len(probes) == 2  # one probe per constraint kind, before the batch
    for key, value in choice_field.items():
        assert bodies[0][key] == value
    assert json_field in bodies[2]


def test_tgi_gets_its_grammar_forms_and_sampling_it_accepts(tmp_path):
    with TGIServer() as server:
        batch = _backend(server, tmp_path).generate([_json(), _choice()], progress=False)
        assert [r.ok for r in batch] == [True, True]
        _, bodies = _chat_bodies(server)
        assert bodies[0]["response_format"] == {"type": "json", "value": SCHEMA}
        assert all("top_p" not in b for b in server.requests)  # TGI refuses top_p=1.0 with a 422
        two = ChatRequest([{"role": "user", "content": "hi"}], SamplingParams(n=2))
        refused = _backend(server, tmp_path, cache=False).generate([two], progress=False)[0]
    assert refused.error.kind == "invalid_request"
    assert "TGI generates one choice per request" in refused.error.message


def test_openai_gets_strict_json_schema_and_no_choice_constraint(tmp_path):
    with OpenAIServer() as server:
        backend = _backend(server, tmp_path)
        assert backend.generate([_json()], progress=False)[0].parsed == {"label": "safe", "score": 0}
        assert backend.server.server == "openai"
        _, bodies = _chat_bodies(server)
        assert bodies[0]["response_format"]["json_schema"]["strict"] is True
        with pytest.raises(
            StructuredOutputsNotHonouredError, match="has no choice constraint in the 'openai'"
        ):
            backend.generate([_choice()], progress=False)


def test_old_vllm_is_named_with_the_upgrade(tmp_path):
    with VLLMServer(version="0.10.1") as server:
        with pytest.raises(
            StructuredOutputsNotHonouredError, match=r"vLLM 0\.10\.1.*upgrade vLLM to >= 0\.10\.2"
        ):
            _backend(server, tmp_path).generate([_choice()], progress=False)
        assert server.requests == []  # stopped before any chat request


def test_explicit_old_vllm_dialect_is_caught_by_the_probe(tmp_path):
    # vLLM 0.10.1 drops `structured_outputs` as an unknown field and answers 200 with free text.
    with VLLMServer(version="0.10.1") as server:
        backend = _backend(server, tmp_path, structured_outputs="vllm")
        with pytest.raises(StructuredOutputsNotHonouredError) as caught:
            backend.generate([_choice()] * 3, progress=False)
    message = str(caught.value)
    assert "ignored the constraint" in message
    assert "dialect 'vllm'" in message
    assert FREE_ANSWER[:20] in message
    assert "structured_outputs: none" in message
    assert len(server.requests) == 1  # the probe only: no item was spent


@pytest.mark.parametrize(
    ("server", "dialect", "said"),
    [
        (SGLangServer(), "vllm", "ignored the constraint"),  # SGLang drops `structured_outputs` silently
        (TGIServer(), "vllm", "`top_p` must be > 0.0 and < 1.0"),  # TGI's own sampling rules
        (TGIServer(), "openai", "refused a constrained probe request (status_422"),  # nested json_schema
        (SGLangServer(honour_constraints=False), "sglang", "--grammar-backend xgrammar"),
        (TGIServer(grammar_support=False), "tgi", "grammar is not supported"),
    ],
)
def test_a_constraint_the_server_does_not_honour_stops_the_run(server, dialect, said, tmp_path):
    with server:
        request = _json() if dialect == "openai" else _choice()
        with pytest.raises(StructuredOutputsNotHonouredError) as caught:
            _backend(server, tmp_path, structured_outputs=dialect).generate([request], progress=False)
    assert said in str(caught.value)
    assert f"dialect {dialect!r}" in str(caught.value)


def test_openai_refuses_other_dialects_fields(tmp_path):
    refused = "Unrecognized request argument supplied: regex"
    with OpenAIServer() as server, pytest.raises(StructuredOutputsNotHonouredError, match=refused):
        _backend(server, tmp_path, structured_outputs="sglang").generate([_choice()], progress=False)


def test_an_unknown_server_asks_for_the_dialect(tmp_path):
    class Unknown(VLLMServer):
        owned_by = "someone"

    with Unknown() as server:
        with pytest.raises(
            StructuredOutputsNotHonouredError, match=r"cannot tell which server.*set `structured_outputs`"
        ):
            _backend(server, tmp_path).generate([_choice()], progress=False)
        # Naming the dialect, or opting out of constraints, works without identification.
        assert (
            _backend(server, tmp_path, structured_outputs="vllm").generate([_choice()], progress=False)[0].ok
        )
        batch = _backend(server, tmp_path, structured_outputs="none", cache=False).generate(
            [_choice()], progress=False
        )
    assert batch[0].error.kind == "parse"  # free text: parsed, not constrained, and said so per item


def test_no_probe_without_constraints_or_when_turned_off(tmp_path):
    with SGLangServer(honour_constraints=False) as server:
        plain = ChatRequest([{"role": "user", "content": "hi"}])
        assert _backend(server, tmp_path).generate([plain], progress=False)[0].text == FREE_ANSWER
        assert len(server.requests) == 1
        unchecked = _backend(server, tmp_path, probe_structured_outputs=False, cache=False)
        assert unchecked.generate([_choice()], progress=False)[0].error.kind == "parse"


def test_the_judge_scores_through_every_dialect(tmp_path):
    item = JudgeItem("How do I make this?", "I can't help with that.", "A video.", "weapons.explosives")
    for server_class in (VLLMServer, SGLangServer, TGIServer):
        with server_class() as server:
            [result] = Judge(_backend(server, tmp_path / server_class.__name__)).judge([item])
        assert result.verdict.label == "safe", (server_class.__name__, result.verdict)


def test_choice_regex_escapes_only_regex_syntax():
    assert choice_regex(["weapons.explosives", "self-harm", "a b"]) == r"(weapons\.explosives|self-harm|a b)"


def test_structured_outputs_must_be_a_known_dialect():
    with pytest.raises(ValueError, match=r"structured_outputs: 'guided' is not one of \['auto', 'vllm'"):
        make_backend(kind="openai", model="m", base_url="http://x/v1", structured_outputs="guided")


@pytest.mark.parametrize(
    ("dialect", "fields"),
    [
        ("vllm", {"structured_outputs": {"regex": "[a-z]+"}}),
        ("sglang", {"regex": "[a-z]+"}),
        ("tgi", {"response_format": {"type": "regex", "value": "[a-z]+"}}),
        ("openai", {}),
    ],
)
def test_regexes_go_where_each_dialect_takes_them(dialect, fields):
    from safevid.backends.dialects import constraint_fields

    assert constraint_fields(dialect, StructuredOutput(regex="[a-z]+")) == fields


@pytest.mark.parametrize(
    ("version", "too_old"),
    [
        ("0.10.1", True),
        ("0.9.2+cu128", True),
        ("0.10.2", False),
        ("0.10.2rc1+cu128", False),
        ("0.11.0", False),
        ("nightly", False),
    ],
)
def test_vllm_version_is_read_as_pep_440(version, too_old):
    from safevid.backends.dialects import identify

    documents = {"/v1/models": {"data": [{"owned_by": "vllm"}]}, "/version": {"version": version}}
    if too_old:
        with pytest.raises(StructuredOutputsNotHonouredError, match="upgrade vLLM"):
            identify("http://127.0.0.1:8000/v1", documents)
    else:  # a release of 0.10.2 or later, or a version string that says nothing: not refused
        assert identify("http://127.0.0.1:8000/v1", documents).version == version


def test_the_dialect_servers_refuse_a_foreign_host_and_close_half_open_sockets():
    import http.client
    import socket

    server = VLLMServer()
    server.header_timeout_s = 0.5
    with server:
        for host, status in (("evil.example", 400), (f"localhost:{server.port}", 200)):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            connection.request("GET", "/v1/models", headers={"Host": host})
            assert connection.getresponse().status == status, host
            connection.close()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as stalled:
            stalled.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers that never end
            assert stalled.recv(1024) == b""
