"""JSON-schema and regex constrained decoding for the transformers backend, with llguidance.

llguidance (the grammar engine behind vLLM's and SGLang's ``guidance`` backends) compiles a JSON schema
(``$defs``/``$ref`` included) or a regex into a matcher over the model's own tokenizer, and tells per
step which tokens keep the text inside the grammar. `GrammarConstraint` has the interface of
`safevid.backends.constrained.ChoiceTrie`: ``allowed(generated)`` lists the tokens allowed after the
tokens generated so far, with the end-of-sequence tokens once the text is complete, so the same logits
processor applies choices, schemas and regexes row by row.

It needs the ``constrained`` extra (``pip install 'safevid[constrained]'``); without it, or for a
grammar it cannot compile, a schema or regex constraint raises `GrammarUnavailableError` (`check_grammar`
says so before any generation), which `safevid serve` answers with a 400.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from safevid.backends.types import StructuredOutput


class GrammarUnavailableError(ValueError):
    """A JSON-schema or regex constraint without llguidance installed, or one it cannot compile."""


def grammar_tokenizer(tokenizer: Any, eos_ids: Iterable[int]) -> Any:
    """The llguidance view of a Hugging Face fast tokenizer (about a second for a large vocabulary: cache it)."""
    _require_llguidance()
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer), eos_token=sorted(set(eos_ids)))


def check_grammar(spec: StructuredOutput) -> None:
    """Raise `GrammarUnavailableError` unless ``spec`` (a schema or a regex) can be decoded under."""
    llguidance = _require_llguidance()
    error = llguidance.LLMatcher.validate_grammar(_grammar(spec))
    if error:
        raise GrammarUnavailableError(f"cannot decode under this constraint: {error}")


def _require_llguidance() -> Any:
    try:
        import llguidance
    except ImportError:
        raise GrammarUnavailableError(
            "JSON-schema and regex constraints need llguidance: pip install 'safevid[constrained]'"
        ) from None
    return llguidance


def _grammar(spec: StructuredOutput) -> str:
    import llguidance

    if spec.regex is not None:
        return llguidance.LLMatcher.grammar_from_regex(spec.regex)
    # Compact JSON: flexible whitespace would let a weak model spend its tokens on blanks.
    return llguidance.LLMatcher.grammar_from_json_schema(
        spec.json_schema or {}, defaults={"whitespace_flexible": False}
    )


class GrammarConstraint:
    """The tokens allowed at each step by a JSON schema or a regex (see the module docstring).

    Args:
        ll_tokenizer: From `grammar_tokenizer`.
        spec: A `StructuredOutput` with ``json_schema`` or ``regex``.
        eos_ids: Tokens that end generation; allowed exactly where the text is complete.
    """

    def __init__(self, ll_tokenizer: Any, spec: StructuredOutput, eos_ids: Iterable[int]) -> None:
        import llguidance

        self._matcher = llguidance.LLMatcher(ll_tokenizer, _grammar(spec), log_level=0)
        if self._matcher.is_error():
            raise GrammarUnavailableError(f"cannot decode under this constraint: {self._matcher.get_error()}")
        self._vocab = ll_tokenizer.vocab_size
        self.eos_ids = sorted(set(eos_ids))
        self._consumed: list[int] = []

    def allowed(self, generated: Sequence[int]) -> list[int]:
        """The tokens allowed after ``generated``; the EOS tokens once generation has ended."""
        import numpy as np

        common = 0
        while (
            common < min(len(self._consumed), len(generated)) and self._consumed[common] == generated[common]
        ):
            common += 1
        if common < len(self._consumed):  # a prefix asked again (log-probabilities after generation)
            self._matcher.rollback(len(self._consumed) - common)
            del self._consumed[common:]
        for token in generated[common:]:
            if token in self.eos_ids or not self._matcher.consume_token(token):
                return self.eos_ids  # ended (later steps pad the row), or off the grammar: only EOS
            self._consumed.append(token)
        if self._matcher.is_stopped():
            return self.eos_ids
        bits = np.unpackbits(
            np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8), bitorder="little"
        )
        return np.flatnonzero(bits[: self._vocab]).tolist()
