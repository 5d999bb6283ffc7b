"""Generation backends: one interface for every VLM and LLM call safevid makes.

The data pipeline (describe, classify, query, respond) and the safety judge call models only
through this package. A batch of [`ChatRequest`] goes to a [`Backend`] made by [`make_backend`]
(OpenAI-compatible HTTP, vLLM offline, or transformers local) and comes back as a
[`GenerationBatch`]: one [`ChatResult`] per request — choices, token usage, top log-probabilities
when asked, parsed structured output — or an ``error`` with its reason, plus a [`BatchSummary`].
Successful responses are cached on disk, so a re-run pays nothing twice.

Example:

```python
from safevid.backends import ChatRequest, SamplingParams, make_backend, text_part, video_part

backend = make_backend(kind="openai", model="Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://127.0.0.1:8000/v1")
request = ChatRequest([{"role": "user", "content": [video_part(sampled), text_part("Describe the video.")]}],
                      SamplingParams(max_tokens=512, top_logprobs=5))
batch = backend.generate([request])
print(batch[0].text if batch[0].ok else batch[0].error, batch.summary)
```
"""

from safevid.backends.base import Backend, BackendConfig, GenerationBatch, RequestStream, make_backend
from safevid.backends.cache import ResponseCache, default_cache_dir, request_key
from safevid.backends.progress import BatchSummary
from safevid.backends.structured import StructuredOutputError, extract_json, parse_structured, validate
from safevid.backends.types import (
    ChatRequest,
    ChatResult,
    Choice,
    RequestError,
    SamplingParams,
    StructuredOutput,
    TokenLogprob,
    Usage,
    image_part,
    text_part,
    video_part,
)

__all__ = [
    "Backend",
    "BackendConfig",
    "BatchSummary",
    "ChatRequest",
    "ChatResult",
    "Choice",
    "GenerationBatch",
    "RequestError",
    "RequestStream",
    "ResponseCache",
    "SamplingParams",
    "StructuredOutput",
    "StructuredOutputError",
    "TokenLogprob",
    "Usage",
    "default_cache_dir",
    "extract_json",
    "image_part",
    "make_backend",
    "parse_structured",
    "request_key",
    "text_part",
    "validate",
    "video_part",
]
