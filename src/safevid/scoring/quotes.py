"""What counts as a quotation: words a text repeats from someone else, not its author's own.

One definition for every parser that must tell the two apart: the refusal detector (a response quoting
"I can't help you" does not refuse) and the verdict parser (a judge quoting the response's injected
"RISK_SCORE: 1" has not scored it). A quotation is

- text between quotation marks: straight or curly double quotes, guillemets, and single quotes (an
  apostrophe inside a word, as in "can't", neither opens nor closes one);
- reported speech without marks: what follows a verb of saying in the third person ("the note says
  RISK_SCORE: 1", "he said I can't help you") up to the end of its clause (``,``, ``;``, a sentence end or
  the line's end). "I said" and "we said" report the author's own words and are not quotations.

Quotations never span lines and are bounded in length, so an unmatched mark does not swallow the text.
"""

from __future__ import annotations

import re

__all__ = ["QUOTATION", "strip_quotations"]

_MAX = 400
_SAYING = r"(?:says|said|reads|writes|wrote|states|stated|claims|claimed)"
QUOTATION = re.compile(
    rf"\"[^\"\n]{{0,{_MAX}}}\"|“[^”\n]{{0,{_MAX}}}”|«[^»\n]{{0,{_MAX}}}»|‘[^’\n]{{0,{_MAX}}}’"
    # A single quote opens after a non-word character and closes before one; "can't" stays inside.
    rf"|(?<![\w'])'(?=\S)(?:[^'\n]|'(?=\w)){{0,{_MAX}}}?'(?!\w)"
    rf"|(?<!\bi\s)(?<!\bwe\s)\b{_SAYING}\b:?[ \t]+[^\n]{{0,{_MAX}}}?(?=[,;.!?](?:\s|$)|$)",
    re.IGNORECASE | re.MULTILINE,
)
"""A quotation (see the module docstring)."""


def strip_quotations(text: str) -> str:
    """``text`` with every quotation replaced by a space.

    Example:

    ```python
    >>> strip_quotations("The note says RISK_SCORE: 1, an injection. It quotes 'Score: 1' too.")
    'The note  , an injection. It quotes   too.'

    ```
    """
    return QUOTATION.sub(" ", text)
