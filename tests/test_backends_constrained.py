"""Choice-constrained decoding: random-weight models always answer one of the choices, directly and over HTTP."""

from __future__ import annotations

import pytest

from safevid.backends import ChatRequest, SamplingParams, StructuredOutput, make_backend
from safevid.backends.constrained import ChoiceTrie
from safevid.backends.server import LoopbackServer

DIGITS = ("1", "2", "3", "4", "5")
# Multi-token choices, one a token-prefix of another: "violence" must stay reachable and end there.
CATEGORIES = ("violence", "violence.graphic_violence", "benign", "self_harm.instructions")
SAFETY = ("safe", "unsafe", "needs_review")


@pytest.fixture(scope="module", params=["text", "qwen2_vl"])
def tiny_model(request):
    from safevid.testing.tiny_models import build_tiny_model

    return build_tiny_model(request.param)


@pytest.fixture(scope="module")
def backend(tiny_model):
    backend = make_backend(kind="transformers", model=str(tiny_model), cache=False, device="cpu")
    backend.load()
    return backend


def _choice_requests(count: int = 20) -> list[ChatRequest]:
    requests = []
    for i in range(count):
        choices = (DIGITS, CATEGORIES, SAFETY)[i % 3]
        top = 5 if choices is DIGITS else (2 if i % 2 else None)
        requests.append(
            ChatRequest(
                [{"role": "user", "content": f"Rate clip {i} and answer with one label."}],
                SamplingParams(max_tokens=16, top_logprobs=top),
                structured=StructuredOutput(choice=choices),
                id=f"choice-{i}",
            )
        )
    return requests


def _sampled_requests() -> list[ChatRequest]:
    return [
        ChatRequest(
            [{"role": "user", "content": f"Score clip {i}."}],
            SamplingParams(max_tokens=16, n=4, temperature=1.0, seed=i),
            structured=StructuredOutput(choice=(DIGITS, CATEGORIES)[i % 2]),
        )
        for i in range(4)
    ]


def _assert_all_within_choices(requests, batch) -> None:
    for request, result in zip(requests, batch, strict=True):
        assert result.ok, (request.id, result.error)
        assert len(result.choices) == request.sampling.n
        for choice in result.choices:
            assert choice.text in request.structured.choice  # exactly a choice, not just parseable
            assert choice.parsed == choice.text
            assert choice.finish_reason == "stop"


def _assert_digit_alternatives(requests, batch, greedy: bool) -> None:
    checked = 0
    for request, result in zip(requests, batch, strict=True):
        if request.structured.choice != DIGITS:
            continue
        (first,) = result.choices[0].logprobs  # one token: the digit
        assert {token for token, _ in first.top} == set(DIGITS)
        assert first.logprob < 0
        # The model's own log-probabilities over the vocabulary: not renormalised to the 5 digits.
        assert sum(2.718281828**lp for _, lp in first.top) < 0.99
        if greedy:
            assert first.token == first.top[0][0] == result.parsed
        checked += 1
    assert checked == 7


def test_choice_trie_allows_eos_only_at_a_complete_choice(backend):
    tokenizer = backend.tokenizer
    eos = sorted(backend._eos_ids)
    prompt = backend.render(ChatRequest([{"role": "user", "content": "Label it."}]))[0]
    trie = ChoiceTrie(tokenizer, CATEGORIES, prompt, eos)
    spell = {c: tokenizer.encode(c, add_special_tokens=False) for c in CATEGORIES}
    assert len(spell["violence.graphic_violence"]) > len(spell["violence"]) >= 1
    assert spell["violence.graphic_violence"][: len(spell["violence"])] == spell["violence"]
    assert set(trie.allowed([])) == {spell[c][0] for c in CATEGORIES}
    assert not set(trie.allowed([])) & set(eos)  # no empty answer
    after_violence = set(trie.allowed(spell["violence"]))
    assert set(eos) <= after_violence  # "violence" is complete...
    assert spell["violence.graphic_violence"][len(spell["violence"])] in after_violence  # ...or goes on
    assert not set(trie.allowed(spell["benign"][:-1])) & set(eos)  # half a word cannot end
    assert set(trie.allowed(spell["benign"])) == set(eos)
    assert trie.allowed([*spell["benign"], eos[0], eos[-1]]) == eos  # a finished row only pads


def test_transformers_backend_always_answers_a_choice(backend):
    requests = _choice_requests()
    # An unconstrained request with the same sampling shares the constrained ones' generate() call.
    free = ChatRequest(
        [{"role": "user", "content": "Say anything."}], SamplingParams(max_tokens=4, top_logprobs=5)
    )
    batch = backend.generate([*requests, free], progress=False)
    assert batch[-1].ok, batch[-1].error
    assert all(len(t.top) == 5 for t in batch[-1].choices[0].logprobs)
    batch = batch[:-1]
    _assert_all_within_choices(requests, batch)
    _assert_digit_alternatives(requests, batch, greedy=True)
    # Greedy under the constraint: each generated token is the best allowed one.
    for result in batch:
        for token in result.choices[0].logprobs or []:
            assert token.token == token.top[0][0]

    sampled = _sampled_requests()
    batch = backend.generate(sampled, progress=False)
    _assert_all_within_choices(sampled, batch)
    picks = [c.text for r in batch for c in r.choices]
    assert len(set(picks)) >= 3  # samples spread over the choices, not one forced answer


def test_choices_are_constrained_through_the_loopback_server(tiny_model, tmp_path):
    import openai

    with LoopbackServer(tiny_model, backend_options={"device": "cpu"}) as server:
        http = make_backend(
            kind="openai",
            model=server.model_name,
            base_url=server.base_url,
            structured_outputs="vllm",  # choices go out as vLLM's `structured_outputs`
            cache_dir=str(tmp_path),
        )
        requests = _choice_requests()
        batch = http.generate(requests, progress=False)
        _assert_all_within_choices(requests, batch)
        _assert_digit_alternatives(requests, batch, greedy=True)
        sampled = _sampled_requests()
        _assert_all_within_choices(sampled, http.generate(sampled, progress=False))

        # The official client with vLLM's older `guided_choice` extra body.
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        completion = client.chat.completions.create(
            model=server.model_name,
            messages=[{"role": "user", "content": "Which label?"}],
            max_tokens=16,
            temperature=0,
            extra_body={"guided_choice": list(CATEGORIES)},
        )
        assert completion.choices[0].message.content in CATEGORIES
    # The batches, the official client's request, and one probe that the constraint is honoured.
    assert server.stats.completed == len(requests) + len(sampled) + 1 + 1


def test_json_schemas_and_regexes_are_decoded_under_their_grammar(backend):
    pytest.importorskip("llguidance")
    schema = {
        "$defs": {"Finding": {"type": "object", "properties": {"label": {"enum": list(SAFETY)}},
                              "required": ["label"], "additionalProperties": False}},
        "type": "object",
        "properties": {"finding": {"$ref": "#/$defs/Finding"}, "risk": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["finding", "risk"],
        "additionalProperties": False,
    }  # fmt: skip
    sampling = SamplingParams(max_tokens=64, temperature=1.0, n=3, seed=0, top_logprobs=3)
    requests = [
        ChatRequest(
            [{"role": "user", "content": f"Report {i}."}], sampling, StructuredOutput(json_schema=schema)
        )
        for i in range(3)
    ] + [
        ChatRequest(
            [{"role": "user", "content": "Code?"}], sampling, StructuredOutput(regex="[A-Z]{2}-[0-9]{3}")
        )
    ]
    batch = backend.generate(requests, progress=False)
    assert all(r.ok for r in batch), [str(r.error) for r in batch]
    for result in batch[:3]:
        for choice in result.choices:
            assert choice.finish_reason == "stop"
            assert choice.parsed["finding"]["label"] in SAFETY
            assert 1 <= choice.parsed["risk"] <= 5
            # The listed alternatives are tokens the grammar allowed at that step: the first opens the object.
            assert 1 <= len(choice.logprobs[0].top) <= 3
            assert all(token.startswith("{") for token, _ in choice.logprobs[0].top)
    assert all(len(c.text) == 6 and c.text[2] == "-" for c in batch[3].choices)
