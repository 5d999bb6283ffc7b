"""The vLLM offline backend: `vllm.LLM.generate` with multimodal inputs, in-process on GPUs.

Install the extra and run on a machine with CUDA GPUs::

    pip install "safevid[vllm]"
    python -c "from safevid.backends import make_backend; b = make_backend(kind='vllm', \\
        model='Qwen/Qwen2.5-VL-7B-Instruct', tensor_parallel_size=2, max_model_len=32768)"

``tensor_parallel_size`` shards one replica over that many GPUs of the node; ``limit_mm_per_prompt``
bounds media per prompt (vLLM reserves memory for it). For many replicas, run ``vllm serve`` per
replica behind a load balancer and use the OpenAI-compatible backend instead.

The module stays thin: `build_call` turns a request into exactly what `LLM.generate` receives — the
prompt rendered by the checkpoint's own chat template, ``multi_modal_data`` (videos as
``(frames[T, H, W, C] uint8, metadata)`` so vLLM keeps the sampled fps, and
``mm_processor_kwargs={"do_sample_frames": False}`` since safevid sampled them already; images as
PIL images), and the `SamplingParams` keyword arguments — and is unit-tested without vLLM. Only
`_generate` imports vLLM. Structured outputs map to vLLM's ``StructuredOutputsParams`` (vLLM >= 0.10.2,
the pin of the ``vllm`` extra); top log-probabilities come from ``logprobs=k``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from safevid.backends import media
from safevid.backends.base import Backend, BackendConfig, BatchHooks
from safevid.backends.cache import checkpoint_fingerprint
from safevid.backends.types import ChatRequest, ChatResult, Choice, RequestError, TokenLogprob, Usage

logger = logging.getLogger(__name__)


@dataclass
class VLLMCall:
    """What one request becomes for `LLM.generate`."""

    prompt: str
    multi_modal_data: dict[str, list[Any]] = field(default_factory=dict)
    mm_processor_kwargs: dict[str, Any] = field(default_factory=dict)
    sampling_kwargs: dict[str, Any] = field(default_factory=dict)
    structured_outputs: dict[str, Any] | None = None

    def prompt_dict(self) -> dict[str, Any]:
        """The ``PromptType`` dict passed to `LLM.generate`."""
        prompt: dict[str, Any] = {"prompt": self.prompt}
        if self.multi_modal_data:
            prompt["multi_modal_data"] = self.multi_modal_data
        if self.mm_processor_kwargs:
            prompt["mm_processor_kwargs"] = self.mm_processor_kwargs
        return prompt


class VLLMBackend(Backend):
    """Offline generation with vLLM (see the module docstring). The engine starts on first use."""

    kind = "vllm"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._llm: Any = None
        self._processor: Any = None

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `vllm.LLM(...)`."""
        c = self.config
        kwargs: dict[str, Any] = {
            "model": c.model,
            "revision": c.revision,
            "tensor_parallel_size": c.tensor_parallel_size,
            "gpu_memory_utilization": c.gpu_memory_utilization,
            "trust_remote_code": c.trust_remote_code,
            "dtype": c.dtype,
            "limit_mm_per_prompt": dict(c.limit_mm_per_prompt),
        }
        if c.max_model_len is not None:
            kwargs["max_model_len"] = c.max_model_len
        return kwargs

    def cache_extra(self) -> Any:
        return {
            "video_sampling": self.config.video_sampling,
            "dtype": self.config.dtype,
            "checkpoint": checkpoint_fingerprint(self.config.model),
        }

    @property
    def processor(self) -> Any:
        """The checkpoint's processor (or tokenizer), used only to render the chat template."""
        if self._processor is None:
            from transformers import AutoProcessor

            c = self.config
            self._processor = AutoProcessor.from_pretrained(
                c.model, revision=c.revision, trust_remote_code=c.trust_remote_code
            )
        return self._processor

    def build_call(self, request: ChatRequest) -> VLLMCall:
        """The prompt, multimodal data and sampling arguments of ``request`` (no vLLM needed)."""
        template_messages, images, videos = media.template_messages(
            request.messages, self._video_item, media.load_image_part
        )
        prompt = self.processor.apply_chat_template(
            template_messages, add_generation_prompt=True, tokenize=False
        )
        call = VLLMCall(prompt=prompt, sampling_kwargs=sampling_kwargs(request))
        if videos:
            call.multi_modal_data["video"] = videos
            call.mm_processor_kwargs["do_sample_frames"] = False
        if images:
            call.multi_modal_data["image"] = images
        if request.structured is not None:
            spec = request.structured
            call.structured_outputs = (
                {"json": spec.json_schema}
                if spec.json_schema is not None
                else {"choice": list(spec.choice or ())}
            )
        return call

    def _video_item(self, video: Any) -> tuple[Any, dict[str, Any]]:
        if isinstance(video, dict):
            video = video["url"]
        if not media.is_sampled_video(video):
            if str(video).startswith(("http://", "https://", "data:")):
                raise ValueError(
                    "the vLLM offline backend takes sampled frames or a local video path, not a URL"
                )
            video = media.sample(str(video).removeprefix("file://"), self.config.video_sampling)
        frames = video.frames.permute(0, 2, 3, 1).contiguous().numpy()  # (T, H, W, C), as vLLM expects
        return frames, video_metadata(video)

    def _generate(self, requests: list[ChatRequest], hooks: BatchHooks) -> None:
        calls: dict[int, VLLMCall] = {}
        for i, request in enumerate(requests):
            try:
                calls[i] = self.build_call(request)
            except Exception as e:
                hooks.finish(
                    i,
                    ChatResult(request.id, error=RequestError("invalid_request", f"{type(e).__name__}: {e}")),
                )
        if not calls:
            return
        llm = self._engine()
        order = list(calls)
        try:
            outputs = llm.generate(
                [calls[i].prompt_dict() for i in order],
                sampling_params=[_sampling_params(calls[i]) for i in order],
                use_tqdm=False,
            )
        except Exception as e:  # an engine error fails this batch's requests, recorded, not raised
            logger.exception("vLLM generate failed")
            for i in order:
                hooks.finish(
                    i, ChatResult(requests[i].id, error=RequestError("backend", f"{type(e).__name__}: {e}"))
                )
            return
        for i, output in zip(order, outputs, strict=True):
            hooks.finish(i, _result(requests[i], output, self.config.model))

    def _engine(self) -> Any:
        if self._llm is None:
            try:
                from vllm import LLM
            except ImportError as e:
                raise ImportError(
                    "the vllm backend needs vLLM: pip install 'safevid[vllm]' (on a CUDA machine)"
                ) from e
            self._llm = LLM(**self.engine_kwargs())
        return self._llm


def sampling_kwargs(request: ChatRequest) -> dict[str, Any]:
    """`vllm.SamplingParams` keyword arguments of a request (structured outputs added at call time)."""
    s = request.sampling
    kwargs: dict[str, Any] = {
        "n": s.n,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_tokens,
        "seed": s.seed,
        "stop": list(s.stop),
    }
    if s.top_logprobs is not None:
        kwargs["logprobs"] = s.top_logprobs
    return kwargs


def video_metadata(video: Any) -> dict[str, Any]:
    """vLLM's per-video metadata dict: the sampled frames as a video at their sampling fps."""
    count = len(video.frames)
    fps = getattr(video, "sampled_fps", None)
    if fps is None:
        raise ValueError("a video for vLLM needs its sampled fps (a SampledVideo or FrameList)")
    return {
        "fps": float(fps),
        "duration": count / float(fps),
        "total_num_frames": count,
        "frames_indices": list(range(count)),
        "video_backend": "safevid",
        "do_sample_frames": False,
    }


def _sampling_params(call: VLLMCall) -> Any:
    from vllm import SamplingParams

    kwargs = dict(call.sampling_kwargs)
    if call.structured_outputs is not None:
        from vllm.sampling_params import StructuredOutputsParams  # vLLM >= 0.10.2, as pinned

        kwargs["structured_outputs"] = StructuredOutputsParams(**call.structured_outputs)
    return SamplingParams(**kwargs)


def _result(request: ChatRequest, output: Any, model: str) -> ChatResult:
    choices = []
    completion_tokens = 0
    for completion in output.outputs:
        completion_tokens += len(completion.token_ids)
        logprobs = None
        if request.sampling.top_logprobs is not None and completion.logprobs is not None:
            logprobs = []
            for token_id, step in zip(completion.token_ids, completion.logprobs, strict=False):
                chosen = step[token_id]
                top = sorted(
                    (
                        lp
                        for lp in step.values()
                        if lp.rank is not None and lp.rank <= request.sampling.top_logprobs
                    ),
                    key=lambda lp: lp.rank,
                )
                logprobs.append(
                    TokenLogprob(
                        chosen.decoded_token, chosen.logprob, [(lp.decoded_token, lp.logprob) for lp in top]
                    )
                )
        choices.append(Choice(completion.text, completion.finish_reason, logprobs))
    return ChatResult(
        request.id,
        choices=choices,
        usage=Usage(len(output.prompt_token_ids or []), completion_tokens),
        attempts=1,
        model=model,
    )
