"""Choice-constrained decoding for the transformers backend, as vLLM's ``guided_choice``.

A [`ChoiceTrie`] holds the token sequences that spell each choice right after the generation
prompt. At every step, [`ChoiceLogitsProcessor`] masks the logits of a constrained row to the
children of the trie node its generated tokens reached, plus the end-of-sequence tokens once they
spell a complete choice; so a row can only end on a whole choice, and a choice that is a prefix
of another (``"violence"``, ``"violence.graphic_violence"``) stays reachable. Sampling, ``n > 1``
and temperature act on the masked logits, so different samples may pick different choices.

Tokenization: BPE may merge the first characters of a choice with the end of the prompt, and a
tokenizer may spell a string several ways. Each choice enters the trie as the tokens it gets when
encoded after the prompt's last characters (what the model would have produced) and as the tokens
of the choice encoded alone; both decode to the choice. Only these spellings are allowed, as in
grammar-based engines that work on a tokenizer's canonical encodings.

JSON-schema constraints are not decoded under a grammar here: they are validated after generation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

_PROMPT_CONTEXT_CHARS = 32  # enough of the prompt's end for any merge across the boundary


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    choice: str | None = None  # set where the tokens so far spell a complete choice


class ChoiceTrie:
    """The token spellings of a fixed list of choices, for one prompt.

    Args:
        tokenizer: The model's tokenizer.
        choices: The allowed strings.
        prompt: The rendered prompt the choice follows (its end decides boundary merges).
        eos_ids: Tokens that end generation; allowed exactly where a choice is complete.
    """

    def __init__(self, tokenizer: Any, choices: Sequence[str], prompt: str, eos_ids: Iterable[int]) -> None:
        self.eos_ids = sorted(set(eos_ids))
        if not self.eos_ids:
            raise ValueError("choice-constrained decoding needs an end-of-sequence token")
        self.root = _Node()
        context = prompt[-_PROMPT_CONTEXT_CHARS:]
        context_ids = _encode(tokenizer, context)
        for choice in choices:
            spellings = {tuple(_encode(tokenizer, choice))}
            after_prompt = _encode(tokenizer, context + choice)
            if after_prompt[: len(context_ids)] == context_ids:
                spellings.add(tuple(after_prompt[len(context_ids) :]))
            for tokens in spellings:
                if tokens:  # a choice swallowed whole by the prompt has no spelling of its own
                    self._insert(tokens, choice)

    def _insert(self, tokens: Sequence[int], choice: str) -> None:
        node = self.root
        for token in tokens:
            node = node.children.setdefault(token, _Node())
        node.choice = choice

    def allowed(self, generated: Sequence[int]) -> list[int]:
        """The tokens allowed after ``generated``; the EOS tokens once generation has ended."""
        node = self.root
        for token in generated:
            if token in self.eos_ids or token not in node.children:
                # Ended (later steps pad the row) or, impossibly, left the trie: only EOS keeps the
                # row's distribution well defined.
                return self.eos_ids
            node = node.children[token]
        return [*node.children, *(self.eos_ids if node.choice is not None else ())]


class ChoiceLogitsProcessor:
    """A `transformers` logits processor applying one `ChoiceTrie` per row (`None`: unconstrained).

    Rows are the expanded batch of `generate`: request ``r``'s ``n`` samples are rows
    ``r * n ... r * n + n - 1``. It returns new scores and leaves its input untouched, so the raw
    logits that `generate` keeps for log-probabilities are the model's own.
    """

    def __init__(self, tries: Sequence[ChoiceTrie | None], prompt_length: int) -> None:
        self.tries = list(tries)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids[:, self.prompt_length :].tolist()
        blocked = torch.zeros_like(scores, dtype=torch.bool)
        for row, trie in enumerate(self.tries):
            if trie is not None:
                blocked[row] = True
                blocked[row, trie.allowed(generated[row])] = False
        return scores.masked_fill(blocked, float("-inf"))


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))
