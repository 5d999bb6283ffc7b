"""Prompt templates (Jinja files shipped in this folder) and the helpers that render them.

Templates are data: `PromptLibrary(directory)` looks in a user's folder first, then in the packaged
templates, so a user overrides one prompt by dropping a file of the same name. [`render`] uses the
packaged templates only.

Untrusted text (the query, the video description, the model's response) is fenced between markers that
carry a nonce the text does not contain (see [`fence_token`]), so a response cannot close its block and
speak to the judge as if it were the prompt.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from safevid.taxonomy import Taxonomy, load_taxonomy

__all__ = [
    "PromptLibrary",
    "fence_token",
    "judge_helpfulness_prompt",
    "judge_risk_prompt",
    "render",
]


class PromptLibrary:
    """A set of Jinja prompt templates: an optional user folder searched first, then the packaged ones.

    Args:
        directory: A folder of ``*.jinja`` templates overriding or adding to the packaged templates.

    Rendering is strict: a variable the template uses but the context lacks raises
    `jinja2.UndefinedError` instead of silently rendering as empty.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None):
        loaders: list[jinja2.BaseLoader] = []
        if directory is not None:
            directory = Path(directory)
            if not directory.is_dir():
                raise NotADirectoryError(f"Prompt template folder {directory} does not exist")
            loaders.append(jinja2.FileSystemLoader(directory))
        loaders.append(jinja2.PackageLoader("safevid", "prompts"))
        self.directory = directory
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain-text prompts, not HTML
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # Templates are read once per library: re-checking every file's mtime on each render
            # (Jinja's default) cost 6 stat calls per judge prompt.
            auto_reload=False,
        )

    def names(self) -> list[str]:
        """Names of the renderable templates (without ``.jinja``; macro files starting with ``_`` excluded)."""
        return sorted(
            n.removesuffix(".jinja")
            for n in self.env.list_templates(extensions=["jinja"])
            if not n.startswith("_")
        )

    def render(self, name: str, /, **context: Any) -> str:
        """Render template ``name`` (with or without the ``.jinja`` suffix) with ``context``."""
        filename = name if name.endswith(".jinja") else f"{name}.jinja"
        try:
            template = self.env.get_template(filename)
        except jinja2.TemplateNotFound:
            where = f"{self.directory} or the packaged prompts" if self.directory else "the packaged prompts"
            raise KeyError(f"No prompt template {name!r} in {where}; available: {self.names()}") from None
        return template.render(**context)


@lru_cache(maxsize=1)
def _packaged() -> PromptLibrary:
    return PromptLibrary()


def render(name: str, /, **context: Any) -> str:
    """Render a packaged prompt template.

    Args:
        name: Template name, e.g. ``"judge_risk"``.
        **context: Template variables.

    Returns:
        The rendered prompt.
    """
    return _packaged().render(name, **context)


def fence_token(*texts: str) -> str:
    """A fence nonce that none of ``texts`` contains.

    The nonce is derived from the texts themselves (SHA-256, 16 hex digits), so one item always renders
    the same prompt — judge calls stay cacheable and snapshot tests stable — while no text can contain
    its own fence: it would have to contain a hash of itself. The containment check guards the
    astronomically unlikely collision anyway.
    """
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big"))  # length prefix: ("ab","c") != ("a","bc")
        digest.update(encoded)
    for counter in range(1000):
        token = hashlib.sha256(digest.digest() + counter.to_bytes(4, "big")).hexdigest()[:16]
        if not any(token in text for text in texts):
            return token
    raise RuntimeError("Could not find a fence token absent from the texts")  # unreachable in practice


def _fence_for(fields: dict[str, Any], fence: str | None) -> str:
    """The fence for these untrusted fields: checked if given, derived from them otherwise."""
    for name, value in fields.items():
        if not isinstance(value, str):
            raise TypeError(f"Prompt field {name!r} must be a string, got {type(value).__name__}")
    if fence is None:
        return fence_token(fields["query"], fields["video_description"], fields["response"])
    if not fence or not fence.isalnum():
        raise ValueError(f"Fence token must be a non-empty alphanumeric string, got {fence!r}")
    for name, value in fields.items():
        if fence in value:
            raise ValueError(f"Prompt field {name!r} contains the fence token {fence!r}; use another fence")
    return fence


def judge_risk_prompt(
    *,
    query: str,
    response: str,
    video_description: str,
    subcategory: str,
    taxonomy: Taxonomy | str | os.PathLike[str] | None = None,
    fence: str | None = None,
    library: PromptLibrary | None = None,
) -> str:
    """The rubric judge prompt (risk 1–5) for one response, carrying its subcategory's rules.

    Args:
        query: The user's query about the video.
        response: The model response to judge.
        video_description: Textual description of the video (the judge does not see it).
        subcategory: Subcategory id in ``taxonomy`` (e.g. ``"weapons.explosives"``).
        taxonomy: A `Taxonomy`, the path of a taxonomy file, or ``None`` for the packaged one.
        fence: Fence nonce; by default [`fence_token`] of the three texts.
        library: Where to find ``judge_risk.jinja``; the packaged templates by default.

    Returns:
        The prompt; the judge is asked to end with a line ``RISK_SCORE: <1-5>``.
    """
    fields = {"query": query, "response": response, "video_description": video_description}
    fence = _fence_for(fields, fence)
    taxonomy = load_taxonomy(taxonomy)
    sub = taxonomy.subcategory(subcategory)
    return (library or _packaged()).render(
        "judge_risk", subcategory=sub, domain=taxonomy.domain(sub.domain), fence=fence, **fields
    )


def judge_helpfulness_prompt(
    *,
    query: str,
    response: str,
    video_description: str,
    fence: str | None = None,
    library: PromptLibrary | None = None,
) -> str:
    """The helpfulness judge prompt (1–10) for one response.

    Args:
        query: The user's query about the video.
        response: The model response to judge.
        video_description: Textual description of the video.
        fence: Fence nonce; by default [`fence_token`] of the three texts.
        library: Where to find ``judge_helpfulness.jinja``; the packaged templates by default.

    Returns:
        The prompt; the judge is asked to end with a line ``HELPFULNESS_SCORE: <1-10>``.
    """
    fields = {"query": query, "response": response, "video_description": video_description}
    fence = _fence_for(fields, fence)
    return (library or _packaged()).render("judge_helpfulness", fence=fence, **fields)
