"""Writing into Markdown that someone else owns (a model card): the markers of safevid's own block, and values
each written as one line, unable to change the document.

The results block of a model card lies between `RESULTS_BEGIN` and `RESULTS_END`: training writes the placeholder
(`safevid.training.model_card`), evaluation replaces it (`safevid.evaluation.card_results`).

A name (a judge's, a benchmark's, a dataset's) comes from a config or a run someone else wrote. Written raw into
a card it could break a line and start a heading, end a marked block, or close a table cell; these helpers write it
as inline text instead.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RESULTS_BEGIN", "RESULTS_END", "inline_code", "inline_text", "table_cell"]

RESULTS_BEGIN = "<!-- safevid:results:begin -->"
RESULTS_END = "<!-- safevid:results:end -->"


def inline_text(value: Any) -> str:
    """``value`` as one line of Markdown text: no line break (so no marker line, no heading), no HTML tag."""
    return " ".join(str(value).split()).replace("<", "&lt;").replace(">", "&gt;")


def inline_code(value: Any) -> str:
    """``value`` as an inline code span (one line; a backtick inside could close the span early)."""
    return "`" + " ".join(str(value).split()).replace("`", "'") + "`"


def table_cell(value: Any) -> str:
    """``value`` as the text of a Markdown table cell: `inline_text` with its pipes escaped."""
    return inline_text(value).replace("|", "\\|")
