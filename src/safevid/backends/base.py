"""The backend interface, its configuration, and the `make_backend` factory.

Every backend takes a batch of [`ChatRequest`] and returns a [`GenerationBatch`]: one
[`ChatResult`] per request, in order, and a [`BatchSummary`]. The shared machinery lives here:
response cache look-ups and stores, structured-output parsing, progress and summary. A backend
implements only `_generate(requests, hooks)`, calling ``hooks.finish(i, result)`` as each result
lands (and ``hooks.retry()`` per retry, for the progress bar).
A failed request is a result with ``error`` set; nothing a single request does raises out of a batch.

`Backend.open_stream` is the unbatched form: a `RequestStream` takes requests one at a time and
answers each with a future, so a caller keeps the server busy with a new request as soon as one
finishes instead of waiting for a whole batch (`safevid.pipeline.batching.run_streamed`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from safevid.backends.cache import ResponseCache, request_key
from safevid.backends.dialects import DIALECTS
from safevid.backends.progress import BatchProgress, BatchSummary
from safevid.backends.structured import StructuredOutputError, parse_structured
from safevid.backends.types import ChatRequest, ChatResult, RequestError

BackendKind = Literal["openai", "vllm", "transformers"]

DEFAULT_API_KEY_ENV = ("SAFEVID_API_KEY", "OPENAI_API_KEY")


@dataclass
class BackendConfig:
    """How to reach a model. Only the fields of the chosen ``kind`` matter; unknown keys are an error.

    API keys are never part of the configuration: the OpenAI-compatible backend reads the first set
    variable among ``api_key_env``, so a config file, manifest or cache entry can never hold one.
    """

    kind: BackendKind = field(default="openai", metadata={"help": "openai | vllm | transformers"})
    model: str = field(default="", metadata={"help": "Served model name (openai) or checkpoint path/id."})
    revision: str | None = field(
        default=None, metadata={"help": "Checkpoint revision (part of the cache key)."}
    )
    # --- OpenAI-compatible HTTP
    base_url: str | None = field(
        default=None, metadata={"help": "e.g. http://127.0.0.1:8000/v1; $OPENAI_BASE_URL, else OpenAI's."}
    )
    api_key_env: tuple[str, ...] = field(
        default=DEFAULT_API_KEY_ENV, metadata={"help": "Environment variables searched for the API key."}
    )
    http_client: Literal["aiohttp", "httpx"] = field(
        default="aiohttp",
        metadata={"help": "aiohttp (fastest at high concurrency) or httpx (honours proxy variables)."},
    )
    max_concurrency: int = field(default=64, metadata={"help": "Requests in flight at once."})
    timeout_s: float = field(default=120.0, metadata={"help": "Per-attempt timeout in seconds."})
    max_retries: int = field(default=5, metadata={"help": "Retries on 429/5xx/timeouts/connection errors."})
    backoff_base_s: float = field(
        default=0.5, metadata={"help": "First backoff; doubles per retry, full jitter."}
    )
    backoff_max_s: float = field(default=30.0, metadata={"help": "Cap of one backoff."})
    max_retry_after_s: float = field(
        default=300.0,
        metadata={"help": "A Retry-After longer than this fails the request instead of waiting."},
    )
    video_input: Literal["frames", "video_url"] = field(
        default="frames",
        metadata={"help": "Send video as image frames, or as one video_url part (vLLM/SGLang video models)."},
    )
    image_format: Literal["jpeg", "png"] = field(
        default="jpeg", metadata={"help": "Encoding of sent frames."}
    )
    structured_outputs: Literal["auto", "vllm", "sglang", "tgi", "openai", "none"] = field(
        default="auto",
        metadata={
            "help": "Dialect of choice and JSON-schema constraints: auto (ask the server what it is), "
            "vllm (>= 0.10.2 `structured_outputs`), sglang (`regex`/`response_format`), tgi "
            "(`response_format` grammar), openai (strict json_schema; no choices), none (parse only)."
        },
    )
    probe_structured_outputs: bool = field(
        default=True,
        metadata={
            "help": "Before the first constrained batch, check with one probe request that the server "
            "honours the constraint; stop with an error naming the fix if it does not."
        },
    )
    extra_body: dict[str, Any] = field(default_factory=dict, metadata={"help": "Extra JSON body keys."})
    # --- response cache
    cache: bool = field(default=True, metadata={"help": "Serve and store responses in the response cache."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Cache folder; safevid_home()/cache/responses."}
    )
    # --- local engines (vllm, transformers)
    video_sampling: dict[str, Any] | None = field(
        default=None, metadata={"help": "VideoSampling fields used when a request gives a video as a path."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code shipped with the checkpoint."})
    dtype: str = field(default="auto", metadata={"help": "Model dtype (auto, bfloat16, float32...)."})
    device: str | None = field(default=None, metadata={"help": "transformers: device; cuda if available."})
    batch_size: int = field(default=8, metadata={"help": "transformers: requests per generate() call."})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm: GPUs per model replica."})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "vllm: fraction of GPU memory."})
    max_model_len: int | None = field(default=None, metadata={"help": "vllm: context length cap."})
    limit_mm_per_prompt: dict[str, int] = field(
        default_factory=lambda: {"video": 1, "image": 8}, metadata={"help": "vllm: media items per prompt."}
    )

    def __post_init__(self) -> None:
        if self.kind not in ("openai", "vllm", "transformers"):
            raise ValueError(f"BackendConfig.kind must be openai, vllm or transformers, got {self.kind!r}")
        if not self.model:
            raise ValueError("BackendConfig.model is required (a served model name or a checkpoint path)")
        if self.structured_outputs not in DIALECTS:
            raise ValueError(
                f"BackendConfig.structured_outputs must be one of {', '.join(DIALECTS)}, "
                f"got {self.structured_outputs!r}"
            )
        if self.http_client not in ("aiohttp", "httpx"):
            raise ValueError(f"BackendConfig.http_client must be aiohttp or httpx, got {self.http_client!r}")
        if self.max_concurrency < 1 or self.batch_size < 1:
            raise ValueError("BackendConfig.max_concurrency and batch_size must be >= 1")
        if self.max_retries < 0 or self.timeout_s <= 0:
            raise ValueError("BackendConfig.max_retries must be >= 0 and timeout_s > 0")
        self.api_key_env = (
            (self.api_key_env,) if isinstance(self.api_key_env, str) else tuple(self.api_key_env)
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendConfig:
        """Build from a mapping (a YAML section) with the one config loader (`safevid.config.from_dict`):
        unknown keys and wrong types raise a `ValueError` naming them."""
        from safevid.config import from_dict

        return from_dict(cls, data)

    def api_key(self) -> str | None:
        """The API key from the first set variable in ``api_key_env`` (never stored on the config)."""
        for name in self.api_key_env:
            if value := os.environ.get(name):
                return value
        return None


class BatchHooks(Protocol):
    """What a backend reports to the batch while it runs."""

    def finish(self, position: int, result: ChatResult) -> None:
        """Request ``position`` (in the list given to `_generate`) is done."""

    def retry(self) -> None:
        """One more retry happened."""


@dataclass
class GenerationBatch(Sequence[ChatResult]):
    """The results of a batch, in request order, and its summary."""

    results: list[ChatResult]
    summary: BatchSummary

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: Any) -> Any:
        return self.results[index]

    def __iter__(self) -> Iterator[ChatResult]:
        return iter(self.results)


class Backend(ABC):
    """Base of all backends: cache, structured-output parsing, progress and summary around `_generate`."""

    kind: ClassVar[str]

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.cache = ResponseCache(config.cache_dir) if config.cache else None

    def cache_extra(self) -> Any:
        """Backend settings that change responses and so belong in the cache key."""
        return None

    def generate(self, requests: Sequence[ChatRequest], *, progress: bool | None = None) -> GenerationBatch:
        """Run a batch; one result per request, in order. Failed requests carry ``error``."""
        run = _BatchRun(self, requests, progress)
        if run.pending:
            self._generate([requests[i] for i in run.pending], run)
        return run.close()

    @abstractmethod
    def _generate(self, requests: list[ChatRequest], hooks: BatchHooks) -> None:
        """Generate ``requests``, calling ``hooks.finish(i, result)`` once per request as it completes."""

    def media_encoding(self) -> dict[str, str] | None:
        """How this backend puts sampled video on the wire (`safevid.backends.media.sampled_video_parts`
        keyword arguments), so callers can encode frames ahead, in worker processes; `None` when the
        backend takes the frames themselves (local engines)."""
        return None

    def open_stream(self) -> RequestStream:
        """A `RequestStream` on this backend: requests one at a time, each answered by a future.

        This default gathers whatever requests are waiting into one `generate` call on a background
        thread (engines that batch on the device); the HTTP backend sends each request on its own.
        """
        return _MicroBatchStream(self)


class RequestStream(ABC):
    """Requests submitted one at a time, each answered by a `concurrent.futures.Future` of its `ChatResult`.

    Attributes:
        capacity (`int`): requests worth keeping in flight to keep the backend busy.
    """

    capacity: int

    @abstractmethod
    def submit(self, request: ChatRequest) -> concurrent.futures.Future[ChatResult]:
        """Start ``request``; the future never raises for a failed request (the result carries ``error``)."""

    @abstractmethod
    def close(self) -> None:
        """Stop the stream once the submitted requests are answered."""


# Local engines load lazily and share the device: one `generate` at a time across every stream (two threads
# loading transformers checkpoints at once break its meta-device initialisation).
_ENGINE_LOCK = threading.Lock()


class _MicroBatchStream(RequestStream):
    """The default stream: a thread runs whatever requests are waiting as one `generate` batch."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.capacity = max(backend.config.batch_size, backend.config.max_concurrency)
        self._queue: queue.SimpleQueue[tuple[ChatRequest, concurrent.futures.Future[ChatResult]] | None]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="safevid-stream", daemon=True)
        self._thread.start()

    def submit(self, request: ChatRequest) -> concurrent.futures.Future[ChatResult]:
        future: concurrent.futures.Future[ChatResult] = concurrent.futures.Future()
        self._queue.put((request, future))
        return future

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            waiting = [first]
            stop = False
            while len(waiting) < self.capacity and not self._queue.empty():
                item = self._queue.get()
                if item is None:
                    stop = True
                    break
                waiting.append(item)
            try:
                with _ENGINE_LOCK:
                    batch = self.backend.generate([request for request, _ in waiting], progress=False)
            except BaseException as error:  # an engine failure fails its waiting requests, not the thread
                for _, future in waiting:
                    future.set_exception(error)
            else:
                for (_, future), result in zip(waiting, batch, strict=True):
                    future.set_result(result)
            if stop:
                return

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class _BatchRun:
    """The bookkeeping of one batch: cache hits up front, then each pending request's result."""

    def __init__(self, backend: Backend, requests: Sequence[ChatRequest], progress: bool | None) -> None:
        self.backend = backend
        self.requests = list(requests)
        self.results: list[ChatResult | None] = [None] * len(self.requests)
        self.progress = BatchProgress(
            len(self.requests), progress, desc=f"{backend.kind}:{backend.config.model}"
        )
        extra = (
            backend.cache_extra() if backend.cache is not None else None
        )  # once a batch: it may stat a checkpoint
        self.keys: list[str | None] = [None] * len(self.requests)
        self.pending: list[int] = []
        for i, request in enumerate(self.requests):
            self.keys[i], ready = look_up(backend, request, extra)
            if ready is not None:
                self._record(i, ready)
            else:
                self.pending.append(i)

    def finish(self, position: int, result: ChatResult) -> None:
        i = self.pending[position]
        settle(self.backend, self.requests[i], self.keys[i], result)
        self._record(i, result)

    def _record(self, i: int, result: ChatResult) -> None:
        if self.results[i] is not None:
            raise RuntimeError(f"backend reported request {self.requests[i].id} twice")
        self.results[i] = result
        self.progress.done(result)

    def retry(self) -> None:
        self.progress.retry()

    def close(self) -> GenerationBatch:
        missing = [self.requests[i].id for i, r in enumerate(self.results) if r is None]
        if missing:
            raise RuntimeError(f"backend returned no result for requests {missing[:5]}")
        return GenerationBatch([r for r in self.results if r is not None], self.progress.close())


def look_up(backend: Backend, request: ChatRequest, extra: Any) -> tuple[str | None, ChatResult | None]:
    """``(cache key, result ready without sending)``: a cache hit, or the failure of a request whose media
    cannot be read (it fails alone); ``extra`` is ``backend.cache_extra()``."""
    if backend.cache is None:
        return None, None
    try:
        key = request_key(backend.kind, backend.config.model, backend.config.revision, request, extra)
    except (OSError, TypeError) as e:  # e.g. a video file that is not there
        error = RequestError("invalid_request", f"{type(e).__name__}: {e}")
        return None, ChatResult(request.id, error=error, metadata=request.metadata)
    return key, backend.cache.get(key, request)


def settle(backend: Backend, request: ChatRequest, key: str | None, result: ChatResult) -> None:
    """Finish a sent request's result: its ids, its parsed choices, and its cache entry."""
    result.request_id, result.metadata = request.id, request.metadata
    if result.ok and request.structured is not None:
        _parse_choices(result, request)
    if result.ok and backend.cache is not None and key is not None:
        backend.cache.put(key, result)


def _parse_choices(result: ChatResult, request: ChatRequest) -> None:
    assert request.structured is not None
    for index, choice in enumerate(result.choices):
        try:
            choice.parsed = parse_structured(choice.text, request.structured)
        except StructuredOutputError as e:
            result.error = RequestError("parse", f"choice {index}: {e}")
            return


def make_backend(config: BackendConfig | dict[str, Any] | None = None, **overrides: Any) -> Backend:
    """Build a backend from a `BackendConfig` (or a mapping of its fields) plus keyword overrides.

    Example:

    ```python
    backend = make_backend(kind="openai", model="Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://127.0.0.1:8000/v1")
    batch = backend.generate([ChatRequest([{"role": "user", "content": "Hi"}])])
    ```
    """
    if isinstance(config, BackendConfig):
        config = dataclasses.replace(config, **overrides)
    else:
        config = BackendConfig.from_dict({**(config or {}), **overrides})
    if config.kind == "openai":
        from safevid.backends.openai_http import OpenAIBackend

        return OpenAIBackend(config)
    if config.kind == "vllm":
        from safevid.backends.vllm_offline import VLLMBackend

        return VLLMBackend(config)
    from safevid.backends.transformers_local import TransformersBackend

    return TransformersBackend(config)
