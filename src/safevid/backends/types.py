"""Requests, parameters and results shared by every generation backend.

Messages are OpenAI-style chat messages (``{"role": ..., "content": str | list[part]}``). Besides the
OpenAI part types (``text``, ``image_url``, ``video_url``), a part may carry a video that safevid
sampled itself, ``{"type": "video", "video": SampledVideo}``, or a local path/URL,
``{"type": "video", "video": "clip.mp4"}``; each backend turns that into what its engine accepts
(image frames or a ``video_url`` over HTTP, ``multi_modal_data`` for vLLM, processor inputs for
transformers). Use [`text_part`], [`video_part`] and [`image_part`] to build parts.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

ErrorKind = Literal["status", "timeout", "connection", "protocol", "parse", "invalid_request", "backend"]
"""Why a request failed: an HTTP error status, a timeout, a connection error, a response that is not
the protocol's JSON, a structured output that does not parse or validate, a request the backend
refuses before sending, or an error raised inside a local engine."""

_request_counter = itertools.count()


def text_part(text: str) -> dict[str, Any]:
    """A text content part."""
    return {"type": "text", "text": text}


def video_part(video: Any) -> dict[str, Any]:
    """A video content part: a `safevid.video.SampledVideo` (pre-sampled frames) or a path/URL."""
    return {"type": "video", "video": video}


def image_part(image: Any) -> dict[str, Any]:
    """An image content part: a `PIL.Image.Image`, a path, or an ``http(s)://``/``data:`` URL."""
    return {"type": "image", "image": image}


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters of one request.

    Args:
        max_tokens: Maximum number of generated tokens per choice.
        temperature: Sampling temperature; ``0`` is greedy decoding.
        top_p: Nucleus-sampling mass.
        n: Number of choices to generate for the request.
        seed: Seed of the request's sampling, where the backend honours one.
        stop: Strings that end generation (not included in the output).
        top_logprobs: If set, return per generated token its log-probability and those of the
            ``top_logprobs`` most likely alternatives (the judge's expected score needs them).
    """

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.top_logprobs is not None and not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"SamplingParams.top_logprobs must be in [0, 20], got {self.top_logprobs}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint on the output: a JSON schema, a fixed list of choices or a regex (exactly one of them).

    Backends that support constrained decoding receive it natively (each server's dialect, see
    `safevid.backends.dialects`; the transformers backend decodes under the constraint); every backend
    then parses and validates the text, and a text that does not parse is a failed request with
    ``error.kind == "parse"``.
    """

    json_schema: dict[str, Any] | None = None
    choice: tuple[str, ...] | None = None
    name: str = "output"
    regex: str | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.json_schema, self.choice, self.regex)) != 1:
            raise ValueError("StructuredOutput needs exactly one of `json_schema`, `choice` or `regex`")
        if self.choice is not None:
            if not self.choice or not all(isinstance(c, str) and c for c in self.choice):
                raise ValueError(f"StructuredOutput.choice must be non-empty strings, got {self.choice!r}")
            object.__setattr__(self, "choice", tuple(self.choice))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "json_schema": self.json_schema,
            "choice": list(self.choice) if self.choice else None,
            "name": self.name,
        }
        if self.regex is not None:  # only when set: existing cache keys of schemas and choices stay valid
            out["regex"] = self.regex
        return out


@dataclass
class ChatRequest:
    """One chat request: messages, sampling parameters, optional structured output.

    Args:
        messages: OpenAI-style messages (see the module docstring for the video/image parts).
        sampling: Sampling parameters.
        structured: Optional JSON-schema or choice constraint.
        id: A caller's id, echoed in the result (a counter if not given).
        metadata: Anything the caller wants echoed back (never sent to the model).
    """

    messages: list[dict[str, Any]]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    structured: StructuredOutput | None = None
    id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = f"req-{next(_request_counter)}"
        validate_messages(self.messages, self.id)


def validate_messages(messages: list[dict[str, Any]], request_id: str) -> None:
    """Raise a `ValueError` naming the request, message and part when a message is malformed."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"request {request_id}: `messages` must be a non-empty list")
    known = {"text", "image", "video", "image_url", "video_url"}
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"request {request_id}: message {i} needs `role` and `content`")
        content = message["content"]
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ValueError(f"request {request_id}: message {i} content must be a string or a list of parts")
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in known:
                raise ValueError(
                    f"request {request_id}: message {i} part {j} has unknown type {kind!r} "
                    f"(expected one of {sorted(known)})"
                )
            if kind not in part:
                raise ValueError(
                    f"request {request_id}: message {i} part {j} of type {kind!r} lacks key {kind!r}"
                )


@dataclass
class TokenLogprob:
    """A generated token, its log-probability, and the top alternatives (token, logprob), best first."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "logprob": self.logprob, "top": [list(t) for t in self.top]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenLogprob:
        return cls(data["token"], float(data["logprob"]), [(t, float(lp)) for t, lp in data["top"]])


@dataclass
class Choice:
    """One generated choice: its raw text, finish reason, token logprobs and parsed structured value."""

    text: str
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    parsed: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish_reason": self.finish_reason,
            "logprobs": None if self.logprobs is None else [t.to_dict() for t in self.logprobs],
            "parsed": self.parsed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Choice:
        logprobs = data.get("logprobs")
        return cls(
            text=data["text"],
            finish_reason=data.get("finish_reason"),
            logprobs=None if logprobs is None else [TokenLogprob.from_dict(t) for t in logprobs],
            parsed=data.get("parsed"),
        )


@dataclass
class Usage:
    """Token usage of one request (summed over its choices)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class RequestError:
    """Why a request failed: a kind (see `ErrorKind`), a message, and the HTTP status when there was one."""

    kind: ErrorKind
    message: str
    status_code: int | None = None

    @property
    def retryable(self) -> bool:
        """Whether the model could not be reached (a timeout, a connection error, a broken response, HTTP
        408/429/5xx): no answer was given, so a later try may succeed. Such a failure is never a judgement."""
        if self.kind == "status":
            return self.status_code in (408, 429) or (self.status_code or 0) >= 500
        return self.kind in ("timeout", "connection", "protocol")

    @property
    def reason(self) -> str:
        """A short label for summaries: ``status_429``, ``timeout``, ``parse``..."""
        return f"status_{self.status_code}" if self.kind == "status" and self.status_code else self.kind

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass
class ChatResult:
    """The outcome of one request: choices and usage, or an error (never both silently).

    A structured-output request whose text does not parse has ``error.kind == "parse"`` and keeps the
    raw text in ``choices`` for inspection; ``parsed`` then raises instead of returning a blank value.
    """

    request_id: str
    choices: list[Choice] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    error: RequestError | None = None
    attempts: int = 0
    cached: bool = False
    model: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str:
        """The first choice's text; raises `RuntimeError` on a failed request."""
        self._raise_if_failed()
        return self.choices[0].text

    @property
    def parsed(self) -> Any:
        """The first choice's parsed structured value; raises `RuntimeError` on a failed request."""
        self._raise_if_failed()
        return self.choices[0].parsed

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"request {self.request_id} failed ({self.error})")

    def to_cache_dict(self) -> dict[str, Any]:
        return {
            "choices": [c.to_dict() for c in self.choices],
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            },
            "model": self.model,
        }

    @classmethod
    def from_cache_dict(cls, request: ChatRequest, data: dict[str, Any]) -> ChatResult:
        return cls(
            request_id=request.id,
            choices=[Choice.from_dict(c) for c in data["choices"]],
            usage=Usage(**data["usage"]),
            cached=True,
            model=data.get("model"),
            metadata=request.metadata,
        )
