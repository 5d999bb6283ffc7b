"""The transformers backend: batched `generate()` on any checkpoint the Auto classes load.

A checkpoint whose config maps to `AutoModelForImageTextToText` loads with its `AutoProcessor` (video
LMMs: Qwen2-VL, Qwen2.5-VL, LLaVA-NeXT-Video, LLaVA-OneVision...); any other with
`AutoModelForCausalLM` + `AutoTokenizer` (text-only requests). Videos go to the processor as
pre-sampled frames through `safevid.families.video_processor_inputs`, so the processor sees the fps
they were sampled at; a video given as a path is sampled with the configured `VideoSampling`.
Requests with equal sampling parameters are batched (``batch_size`` per call, left padding).
A ``StructuredOutput(choice=...)`` is decoded under a constraint (`safevid.backends.constrained`,
like vLLM's ``guided_choice``): every choice of the result is one of the strings, for any model,
with sampling and ``n > 1`` too (``max_tokens`` must cover the longest choice, or the text stops
short and fails to parse). JSON schemas and regexes are decoded under their grammar too, with
llguidance (`safevid.backends.grammar`, the ``constrained`` extra). Top log-probabilities come from the raw logits (``output_logits``), as vLLM reports
them, not from temperature-warped or masked scores: each is the model's log-probability over the
whole vocabulary, not renormalised over the allowed tokens. At a constrained step the listed
alternatives are the allowed tokens only (best first, at most ``top_logprobs`` of them), so a choice
over ``"1"``..``"5"`` lists the five digits at position 0 for the judge's expected score.
`next_token_logprobs` scores next-token candidates from the full softmax at the answer position, without
generating (Video-SafetyBench's RJScore judge needs the exact distribution over "1".."5").
``trust_remote_code`` stays off unless the config turns it on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safevid.backends import media
from safevid.backends.base import Backend, BackendConfig, BatchHooks
from safevid.backends.cache import checkpoint_fingerprint
from safevid.backends.types import ChatRequest, ChatResult, Choice, RequestError, TokenLogprob, Usage

logger = logging.getLogger(__name__)


class TransformersBackend(Backend):
    """Local generation with transformers (see the module docstring). The model loads on first use."""

    kind = "transformers"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.model: Any = None
        self.processor: Any = None  # an AutoProcessor (VLM) or the tokenizer (text LM)
        self.tokenizer: Any = None
        self.is_vlm = False
        self._grammar_tokenizer: Any = None  # llguidance's view of the tokenizer, built on first use

    def load(self) -> None:
        """Load model and processor (idempotent)."""
        if self.model is not None:
            return
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        from transformers.utils.peft_utils import find_adapter_config_file

        c = self.config
        common = {"revision": c.revision, "trust_remote_code": c.trust_remote_code}
        # A LoRA adapter (what `recipes/dpo.py` saves with `use_peft`) loads onto its base model and is
        # merged, so an aligned adapter is evaluated or served like any checkpoint.
        adapter_config = find_adapter_config_file(c.model, revision=c.revision)
        base = (
            json.loads(Path(adapter_config).read_text())["base_model_name_or_path"]
            if adapter_config
            else c.model
        )
        base_common = common if base == c.model else {"trust_remote_code": c.trust_remote_code}
        model_config = AutoConfig.from_pretrained(base, **base_common)
        self.is_vlm = model_config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        device = c.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.is_vlm:
            self.processor = AutoProcessor.from_pretrained(base, **base_common)
            self.tokenizer = self.processor.tokenizer
            model_class: Any = AutoModelForImageTextToText
        else:
            self.processor = self.tokenizer = AutoTokenizer.from_pretrained(base, **base_common)
            model_class = AutoModelForCausalLM
        # Left padding: generated tokens of every row start at the same position.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = model_class.from_pretrained(base, dtype=c.dtype, **base_common)
        if adapter_config:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, c.model, revision=c.revision).merge_and_unload()
        self.model = model.to(device).eval()
        eos = self.model.generation_config.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            self._eos_ids.add(self.tokenizer.eos_token_id)

    def cache_extra(self) -> Any:
        return {
            "video_sampling": self.config.video_sampling,
            "dtype": self.config.dtype,
            "checkpoint": checkpoint_fingerprint(self.config.model),
        }

    def _generate(self, requests: list[ChatRequest], hooks: BatchHooks) -> None:
        self.load()
        prepared: dict[int, tuple[str, list[Any], list[Any]]] = {}
        for i, request in enumerate(requests):
            try:
                prepared[i] = self.render(request)
            except Exception as e:  # one bad video or message fails its request, not the batch
                hooks.finish(
                    i,
                    ChatResult(request.id, error=RequestError("invalid_request", f"{type(e).__name__}: {e}")),
                )
        groups: dict[Any, list[int]] = {}
        for i in prepared:
            groups.setdefault(requests[i].sampling, []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.config.batch_size):
                chunk = indices[start : start + self.config.batch_size]
                for i, result in zip(
                    chunk,
                    self._generate_chunk([requests[i] for i in chunk], [prepared[i] for i in chunk]),
                    strict=False,
                ):
                    hooks.finish(i, result)

    def _generate_chunk(
        self, requests: list[ChatRequest], prepared: list[tuple[str, list[Any], list[Any]]]
    ) -> list[ChatResult]:
        try:
            return self._run(requests, prepared)
        except Exception as e:
            if len(requests) == 1:
                logger.warning("generation failed for request %s: %s", requests[0].id, e)
                return [ChatResult(requests[0].id, error=RequestError("backend", f"{type(e).__name__}: {e}"))]
            # Isolate the culprit: run the chunk's requests one by one.
            return [self._generate_chunk([r], [p])[0] for r, p in zip(requests, prepared, strict=True)]

    def render(self, request: ChatRequest) -> tuple[str, list[Any], list[Any]]:
        """The prompt text, images and videos of a request, in placeholder order."""
        template_messages, images, videos = media.template_messages(
            request.messages, self._video, media.load_image_part
        )
        if (images or videos) and not self.is_vlm:
            raise ValueError(
                f"{self.config.model} is a text-only model; request {request.id} carries images or video"
            )
        if not self.is_vlm:  # text tokenizers' templates expect string content
            template_messages = [
                {"role": m["role"], "content": "".join(p["text"] for p in m["content"])}
                for m in template_messages
            ]
        if getattr(self.processor, "chat_template", None) is None:
            raise ValueError(f"{self.config.model} has no chat template; pass a checkpoint with one")
        prompt = self.processor.apply_chat_template(
            template_messages, add_generation_prompt=True, tokenize=False
        )
        return prompt, images, videos

    def _video(self, video: Any) -> Any:
        if isinstance(video, dict):  # a wire-format {"url": ...}
            video = video["url"]
        if media.is_sampled_video(video):
            return video
        if str(video).startswith(("http://", "https://", "data:")):
            raise ValueError("the transformers backend takes sampled frames or a local video path, not a URL")
        return media.sample(str(video).removeprefix("file://"), self.config.video_sampling)

    def _run(
        self, requests: list[ChatRequest], prepared: list[tuple[str, list[Any], list[Any]]]
    ) -> list[ChatResult]:
        import torch

        sampling = requests[0].sampling
        prompts = [p for p, _, _ in prepared]
        inputs = self._model_inputs(prepared)
        want_logprobs = sampling.top_logprobs is not None
        generate_kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "do_sample": sampling.temperature > 0,
            "num_return_sequences": sampling.n,
            "return_dict_in_generate": True,
            "output_logits": want_logprobs,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if self._eos_ids:  # stop where `_choice` cuts the text, and where a choice may end
            generate_kwargs["eos_token_id"] = sorted(self._eos_ids)
        if sampling.temperature > 0:
            generate_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            generate_kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
        prompt_len = inputs["input_ids"].shape[1]
        tries = [self._constraint(request, prompt) for request, prompt in zip(requests, prompts, strict=True)]
        if any(trie is not None for trie in tries):
            from transformers import LogitsProcessorList

            from safevid.backends.constrained import ChoiceLogitsProcessor

            row_tries = [trie for trie in tries for _ in range(sampling.n)]  # rows r*n .. r*n+n-1
            generate_kwargs["logits_processor"] = LogitsProcessorList(
                [ChoiceLogitsProcessor(row_tries, prompt_len)]
            )
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **generate_kwargs)
        generated = output.sequences[:, prompt_len:].tolist()
        logprobs = None
        if want_logprobs:
            logprobs = torch.stack(output.logits, dim=1).float().log_softmax(dim=-1)  # (rows, steps, vocab)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        results = []
        for r, request in enumerate(requests):
            choices, completion_tokens = [], 0
            for k in range(sampling.n):
                row = r * sampling.n + k
                choice, used = self._choice(
                    generated[row], None if logprobs is None else logprobs[row], sampling, tries[r]
                )
                choices.append(choice)
                completion_tokens += used
            results.append(
                ChatResult(
                    request.id,
                    choices=choices,
                    usage=Usage(int(prompt_tokens[r]), completion_tokens),
                    attempts=1,
                    model=self.config.model,
                )
            )
        return results

    def _model_inputs(self, prepared: list[tuple[str, list[Any], list[Any]]]) -> Any:
        """Tokenised prompts (and processed media) of rendered requests, left-padded, on the model's device."""
        prompts = [p for p, _, _ in prepared]
        images = [img for _, imgs, _ in prepared for img in imgs]
        videos = [vid for _, _, vids in prepared for vid in vids]
        if self.is_vlm:
            from safevid.families import video_processor_inputs

            kwargs: dict[str, Any] = video_processor_inputs(self.processor, videos) if videos else {}
            if images:
                kwargs["images"] = images
            inputs = self.processor(text=prompts, padding=True, return_tensors="pt", **kwargs)
        else:
            inputs = self.tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
        return inputs.to(self.model.device)

    def next_token_logprobs(self, request: ChatRequest, candidates: Sequence[str]) -> list[float]:
        """Log-probabilities of ``candidates`` as the first answer token, from the full softmax.

        One forward pass over the rendered prompt (chat template with the generation prompt); the
        log-softmax over the whole vocabulary at the last prompt position, read at each candidate's token.
        Nothing is generated and nothing is cached. Requests run one at a time: no padding, so the
        distribution is the one an unbatched forward pass gives.

        Args:
            request: The chat (its sampling parameters are ignored).
            candidates: Strings that are one token each (e.g. ``"1"``..``"5"``).

        Raises:
            ValueError: a candidate is not exactly one token of this tokenizer.
        """
        import torch

        self.load()
        ids = []
        for candidate in candidates:
            encoded = self.tokenizer.encode(candidate, add_special_tokens=False)
            if len(encoded) != 1:
                raise ValueError(
                    f"{self.config.model}: candidate {candidate!r} is {len(encoded)} tokens {encoded}, not one; "
                    "next-token scoring needs single-token candidates"
                )
            ids.append(encoded[0])
        inputs = self._model_inputs([self.render(request)])
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0, -1].float()
        return logits.log_softmax(dim=-1)[ids].tolist()

    def _constraint(self, request: ChatRequest, prompt: str) -> Any:
        """The per-row constraint of ``request``: a choice trie, a grammar, or `None`."""
        spec = request.structured
        if spec is None:
            return None
        if spec.choice is not None:
            from safevid.backends.constrained import ChoiceTrie

            return ChoiceTrie(self.tokenizer, spec.choice, prompt, self._eos_ids)
        from safevid.backends.grammar import GrammarConstraint, grammar_tokenizer

        if self._grammar_tokenizer is None:
            self._grammar_tokenizer = grammar_tokenizer(self.tokenizer, self._eos_ids)
        return GrammarConstraint(self._grammar_tokenizer, spec, self._eos_ids)

    def _choice(self, tokens: list[int], logprobs: Any, sampling: Any, trie: Any) -> tuple[Choice, int]:
        """Text, finish reason and logprobs of one generated row; also its generated-token count."""
        length = next((i for i, t in enumerate(tokens) if t in self._eos_ids), None)
        finish = "stop" if length is not None else "length"
        kept = tokens[: length if length is not None else len(tokens)]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        for stop in sampling.stop:  # OpenAI semantics: the stop string is not part of the text
            if stop in text:
                text, finish = text[: text.index(stop)], "stop"
        token_logprobs = None
        if logprobs is not None:
            import torch

            k = sampling.top_logprobs or 0
            token_logprobs = []
            for step, token in enumerate(kept):
                top: list[tuple[str, float]] = []
                if k and trie is None:
                    best = logprobs[step].topk(k)
                    top = [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(*best, strict=True)]
                elif k:  # the alternatives the constraint allowed, with their unmasked log-probabilities
                    allowed = torch.tensor(trie.allowed(kept[:step]), device=logprobs.device)
                    best = logprobs[step, allowed].topk(min(k, len(allowed)))
                    top = [
                        (self.tokenizer.decode([int(allowed[i])]), float(v))
                        for v, i in zip(*best, strict=True)
                    ]
                token_logprobs.append(
                    TokenLogprob(self.tokenizer.decode([token]), float(logprobs[step, token]), top)
                )
        used = len(kept) + (length is not None)
        return Choice(text, finish, token_logprobs), used
