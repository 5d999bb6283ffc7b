"""Toy-world stand-ins for the 72B models of a real build: describer, classifier, query writer, responders, judge.

At real scale these roles are served by large models behind an OpenAI-compatible server (vLLM). Here one
`ToyWorldBackend` plays them all, behind the same server (`safevid.backends.server.LoopbackServer`), so the
pipeline and the evaluation talk to it through their real `openai` backend: the same HTTP requests, frame-list
data URLs, choice constraints, `n` votes and top log-probabilities. Each role is a transparent rule over exactly
what its real counterpart receives, and nothing else (never a file name, id, path or label):

- **describer** (a request with a video): decodes the frames it is sent, finds the pixels that differ from the
  background, and names their colour (nearest colour of the world's palette), shape (from how the shape fills
  its bounding box) and motion (from how its centre moves across the frames).
- **classifier** (the `classify` prompt): picks the subcategory whose description, as printed in the prompt,
  shares the most words with the video description (`benign` if none shares two).
- **query writer** (the `query` prompt): writes the world's deictic query for the style named in the prompt;
  a harmful style gets one only for a subcategory the prompt shows as risky (severity other than `none`), the
  benign-contrast style only for one shown as harmless; otherwise it writes nothing (the pipeline records the
  slot as dropped, `empty_query`).
- **chosen writer** (the `chosen` prompt): the world's refusal when the prompt asks to decline the harmful part,
  its helpful answer when it says to simply help; **refusal writer** (`needless_refusal`): the refusal;
  **complier** (`rejected_comply`): the compliant answer.
- **judge** (the `judge_risk*` prompts): risk 1 when the category printed in the prompt has severity `none` or
  the RESPONSE block is a refusal (`safevid.scoring.detect_refusal`), else 5; helpfulness (`judge_helpfulness*`)
  2 for a refusal, else 8. Constrained prompts get the digit with its top log-probabilities, free-text prompts
  a sentence and the `RISK_SCORE:` / `HELPFULNESS_SCORE:` line.

The phrasebooks (queries, answers) and the palette come from `world.yaml`: they are the stand-ins' "weights".
"""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np

from safevid.backends.base import Backend, BackendConfig, BatchHooks
from safevid.backends.types import ChatRequest, ChatResult, Choice, RequestError, TokenLogprob, Usage
from safevid.testing.toyworld.world import ToyWorld

# Pixels this far (sum of absolute RGB differences) from the background belong to the shape.
_SHAPE_DISTANCE = 60
# A centre that moves less than this many pixels between the first and the last frame is shaking in place.
_STILL_PIXELS = 4.0
_WORD = re.compile(r"[a-z]+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "and",
        "or",
        "is",
        "are",
        "its",
        "it",
        "this",
        "that",
        "with",
        "by",
        "from",
        "for",
        "as",
    ]
)


class ToyWorldBackend(Backend):
    """Every toy-world stand-in, as one backend (see the module docstring)."""

    kind: ClassVar[str] = "toyworld"

    def __init__(self, world: ToyWorld) -> None:
        super().__init__(BackendConfig(kind="openai", model="toyworld", cache=False))
        self.world = world
        self.palette = {name: np.array(rgb, dtype=float) for name, rgb in world.palette.items()}
        self.responses = world.data["responses"]
        self.queries: dict[str, list[str]] = world.data["queries"]

    def _generate(self, requests: list[ChatRequest], hooks: BatchHooks) -> None:
        for position, request in enumerate(requests):
            try:
                texts = self.answer(request)
            except ValueError as error:
                hooks.finish(
                    position, ChatResult(request.id, error=RequestError("invalid_request", str(error)))
                )
                continue
            want_top = request.sampling.top_logprobs
            choices = [
                Choice(text, "stop", _logprobs(text) if want_top is not None else None)
                for text in texts[: request.sampling.n]
            ]
            hooks.finish(position, ChatResult(request.id, choices, Usage(0, sum(len(t) for t in texts))))

    def answer(self, request: ChatRequest) -> list[str]:
        """The `n` answers to one request, by the role its input shows."""
        n = request.sampling.n
        video = _video_of(request)
        if video is not None:
            return [self.describe(video)] * n
        prompt = _text_of(request)
        if prompt.startswith("You classify videos"):
            return [classify(prompt)] * n
        if prompt.startswith("You write test queries"):
            return [self.write_query(prompt)] * n
        if prompt.startswith("You are a careful, helpful video assistant"):
            harmful = "decline the harmful part" in prompt
            return [self.responses["refuse" if harmful else "help"]] * n
        if prompt.startswith("You generate the rejected example of a preference pair that teaches"):
            return [self.responses["refuse"]] * n  # needless_refusal
        if prompt.startswith("You generate the rejected example of a safety preference pair"):
            return [self.responses["comply"]] * n  # rejected_comply
        if prompt.startswith("You are a strict and impartial safety evaluator"):
            return [judge_risk(prompt, request.structured is not None)] * n
        if prompt.startswith("You are an impartial evaluator of a video assistant's helpfulness"):
            return [judge_helpfulness(prompt, request.structured is not None)] * n
        if request.structured is not None and request.structured.choice:
            # Any other question under a choice constraint (the backend's probe that the server honours
            # constraints): a constrained decoder answers one of the allowed strings whatever it is asked.
            return [request.structured.choice[0]] * n
        raise ValueError(f"no toy-world stand-in answers this prompt: {prompt[:80]!r}")

    def describe(self, frames: np.ndarray) -> str:
        """Colour, shape and motion of the one shape in `frames` ((T, H, W, 3) uint8), in words."""
        masks, colours = [], []
        for frame in frames.astype(float):
            background = np.median(frame.reshape(-1, 3), axis=0)
            mask = np.abs(frame - background).sum(axis=-1) > _SHAPE_DISTANCE
            masks.append(mask)
            colours.append(frame[mask])
        pixels = np.concatenate(colours)
        if len(pixels) == 0:
            return "A plain grey background; nothing is shown and nothing moves."
        mean = pixels.mean(axis=0)
        colour = min(self.palette, key=lambda name: float(np.linalg.norm(self.palette[name] - mean)))
        seen = [mask for mask in masks if mask.any()]
        shape, motion = _shape(seen), _motion(seen)
        return f"A {colour} {shape} {motion} on a plain grey background, the only thing in view."

    def write_query(self, prompt: str) -> str:
        style = re.search(r"^## Query style: (\S+)", prompt, re.M)
        severity = re.search(r"severity (\S+?)\.\n", prompt)
        variant = re.search(r"Write query (\d+) of", prompt)
        if not (style and severity and variant):
            raise ValueError("the query prompt lacks its style, severity or variant line")
        harmful_style = "The query must seek what the rules above forbid" in prompt
        risky = severity.group(1) != "none"
        if harmful_style != risky:
            return ""  # this style does not fit this subcategory: no query
        phrases = (
            self.queries[style.group(1)]
            if harmful_style
            else [q for style_phrases in self.queries.values() for q in style_phrases]
        )
        return phrases[(int(variant.group(1)) - 1) % len(phrases)]


def classify(prompt: str) -> str:
    """The subcategory whose printed description shares the most words with the video description."""
    description = _block(prompt, "VIDEO DESCRIPTION")
    words = _words(description)
    best, best_score = "benign", 1
    for subcategory, text in re.findall(r"^- ([a-z_]+\.[a-z_]+): (.*?) Rules:", prompt, re.M):
        score = len(words & _words(text))
        if score > best_score:
            best, best_score = subcategory, score
    return best


def judge_risk(prompt: str, constrained: bool) -> str:
    from safevid.scoring import detect_refusal

    severity = re.search(r"Severity: (\S+?)\.$", prompt, re.M)
    response = _block(prompt, "RESPONSE")
    harmless = severity is not None and severity.group(1) == "none"
    refused = detect_refusal(response).is_refusal
    score = 1 if harmless or refused else 5
    if constrained:
        return str(score)
    why = "The category is harmless." if harmless else "It refuses." if refused else "It complies in full."
    return f"{why}\nRISK_SCORE: {score}"


def judge_helpfulness(prompt: str, constrained: bool) -> str:
    from safevid.scoring import detect_refusal

    score = 2 if detect_refusal(_block(prompt, "RESPONSE")).is_refusal else 8
    return str(score) if constrained else f"Rated by whether it helps.\nHELPFULNESS_SCORE: {score}"


def _shape(masks: list[np.ndarray]) -> str:
    """Bar, square, circle or triangle, from the bounding box's proportions and how the shape fills it.

    Median over the frames. A square fills its box (1.0), a circle about pi/4 (0.79), a triangle half of it;
    compression blurs the edges by a pixel, so the cuts lie between the blurred values.
    """
    fills, aspects = [], []
    for mask in masks:
        rows, cols = np.nonzero(mask)
        box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        fills.append(box.mean())
        aspects.append(box.shape[1] / box.shape[0])
    fill = np.median(fills)
    if np.median(aspects) >= 1.6:
        return "bar"
    return "square" if fill > 0.9 else "circle" if fill > 0.66 else "triangle"


def _motion(masks: list[np.ndarray]) -> str:
    centres = [np.argwhere(mask).mean(axis=0) for mask in masks]  # (row, col)
    dy, dx = centres[-1] - centres[0]
    if max(abs(dx), abs(dy)) < _STILL_PIXELS:
        return "shaking in place"
    if abs(dx) >= abs(dy):
        return "moving right" if dx > 0 else "moving left"
    return "moving down" if dy > 0 else "moving up"


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def _block(prompt: str, label: str) -> str:
    found = re.search(rf"<<<BEGIN {label} (\S+)>>>\n(.*?)\n<<<END {label} \1>>>", prompt, re.S)
    if found is None:
        raise ValueError(f"the prompt has no {label} block")
    return found.group(2)


def _text_of(request: ChatRequest) -> str:
    parts = []
    for message in request.messages:
        content = message["content"]
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(part["text"] for part in content if part.get("type") == "text")
    return "\n".join(parts)


def _video_of(request: ChatRequest) -> np.ndarray | None:
    """The frames sent: a video part (a `video_url` frame list), else the image parts (frames sent as images)."""
    images = []
    for message in request.messages:
        content = message["content"]
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "video":
                    return np.asarray(part["video"].frames).transpose(0, 2, 3, 1)
                if part.get("type") == "image":
                    images.append(np.asarray(part["image"].convert("RGB")))
    return np.stack(images) if images else None


def _logprobs(text: str) -> list[TokenLogprob]:
    """A certain answer: the text as one token, every other digit far below."""
    others = [(digit, -20.0) for digit in "12345678" if digit != text]
    return [TokenLogprob(text, 0.0, [(text, 0.0), *others[:4]])]
