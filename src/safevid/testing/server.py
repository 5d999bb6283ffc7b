"""The fault-injecting test double of `safevid serve`: added latency, HTTP errors, hangs, broken bodies.

`FaultInjectingServer` is the real `safevid.backends.server.LoopbackServer` with faults drawn per request from
a seeded RNG: added latency, HTTP 500, HTTP 429 with ``Retry-After``, hangs longer than the client's timeout,
malformed and truncated JSON bodies. In latency-only mode it serves no model at all: a fixed reply after a fixed
delay, for throughput benchmarks. Replies are spliced from choices serialised once per (n, top_logprobs), and
fault draws are skipped when every rate is 0, so the double adds little to the server's own cost per request.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safevid.backends.request_checks import InvalidRequest, error_body
from safevid.backends.server import LoopbackServer, structured_from, wire_choices

__all__ = ["FaultConfig", "FaultInjectingServer"]


@dataclass
class FaultConfig:
    """Faults injected into ``/v1/chat/completions``, drawn per request from a seeded RNG.

    Each ``*_rate`` is an independent probability; when several fire, the first in the order
    500, 429, timeout, malformed, truncated applies. ``slow_rate`` adds ``slow_s`` on top of
    ``latency_s`` and still answers. ``latency_sigma > 0`` makes the latency heavy-tailed: log-normal
    with median ``latency_s`` and shape ``latency_sigma`` (mean ``latency_s * exp(sigma**2 / 2)``), drawn
    from its own seeded RNG so the fault draws do not change.
    """

    latency_s: float = 0.0
    latency_sigma: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 0.5
    error_500_rate: float = 0.0
    error_429_rate: float = 0.0
    retry_after_s: float = 1.0
    timeout_rate: float = 0.0
    hang_s: float = 30.0
    malformed_rate: float = 0.0
    truncated_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "slow_rate",
            "error_500_rate",
            "error_429_rate",
            "timeout_rate",
            "malformed_rate",
            "truncated_rate",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"FaultConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.latency_s < 0 or self.latency_sigma < 0:
            raise ValueError("FaultConfig.latency_s and latency_sigma must be >= 0")


@dataclass
class FaultInjectingServer(LoopbackServer):
    """`LoopbackServer` with injected faults, or no model at all (see the module docstring).

    Args:
        model_dir: Checkpoint served through the transformers backend; `None` with ``latency_only``.
        latency_only: Serve ``reply`` after ``faults.latency_s`` without a model.
        reply: The latency-only reply.
        faults: Faults to inject (a `FaultConfig`); none by default. Assign a new one to change them mid-run.
        **kwargs: `LoopbackServer`'s other arguments (``model_name``, ``host``, ``port``, ``api_key``,
            ``backend_options``).

    Example:

    ```python
    with FaultInjectingServer(latency_only=True, faults=FaultConfig(latency_s=0.05)) as server:
        backend = make_backend(kind="openai", model=server.model_name, base_url=server.base_url)
    ```
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        latency_only: bool = False,
        reply: str = "OK",
        faults: FaultConfig | None = None,
        model_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if (model_dir is None) != latency_only:
            raise ValueError("give a model_dir, or latency_only=True without one")
        super().__init__(
            model_dir, model_name=model_name or (None if model_dir else "latency-only"), **kwargs
        )
        self.latency_only = latency_only
        self.reply = reply
        self.faults = faults or FaultConfig()
        self._model_json = json.dumps(self.model_name).encode()
        self._latency_choices: dict[tuple[int, int | None], tuple[bytes, int]] = {}

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    @faults.setter
    def faults(self, faults: FaultConfig) -> None:
        self._faults = faults
        self._rng = random.Random(faults.seed)
        self._latency_rng = random.Random(faults.seed + 1)

    async def _chat(self, request: dict[str, Any]) -> tuple[int, bytes, dict[str, str]] | None:
        f, rng = self.faults, self._rng
        rates = (
            f.slow_rate,
            f.error_500_rate,
            f.error_429_rate,
            f.timeout_rate,
            f.malformed_rate,
            f.truncated_rate,
        )
        # Draw every fault each time so the sequence of draws does not depend on which one fires
        # (with every rate at 0 nothing can fire, and the throughput benchmark skips the draws).
        slow, e500, e429, hang, malformed, truncated = (
            (rng.random() < rate for rate in rates) if any(rates) else (False,) * 6
        )
        latency = f.latency_s
        if f.latency_sigma > 0:
            latency = (
                self._latency_rng.lognormvariate(math.log(latency), f.latency_sigma) if latency > 0 else 0.0
            )
        delay = latency + (f.slow_s if slow else 0.0)
        if slow:
            self._count("slow")
        if delay > 0:
            await asyncio.sleep(delay)
        if e500:
            self._count("error_500")
            return 500, error_body("injected server error", "internal_error"), {}
        if e429:
            self._count("error_429")
            return (
                429,
                error_body("injected rate limit", "rate_limit_exceeded"),
                {"Retry-After": f"{f.retry_after_s:g}"},
            )
        if hang:
            self._count("timeout")
            await asyncio.sleep(f.hang_s)
            return None
        status, payload = await self._answer(request)
        if status == 200 and malformed:
            self._count("malformed")
            return 200, b"<html>502 upstream</html> not json", {}
        if status == 200 and truncated:
            self._count("truncated")
            return 200, payload[: len(payload) // 2], {}
        self.stats.completed += status == 200
        return status, payload, {}

    def _count(self, fault: str) -> None:
        self.stats.faults[fault] = self.stats.faults.get(fault, 0) + 1

    async def _complete(self, request: dict[str, Any]) -> tuple[int, bytes]:
        if not self.latency_only:
            return await super()._complete(request)
        try:
            params = self._sampling(request)
            structured_from(request)  # refused as the real server refuses it, though not applied
        except InvalidRequest as e:
            return e.status, e.body()
        except (ValueError, TypeError) as e:
            return 400, error_body(str(e), "bad_request")
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request["messages"])
        return 200, self._latency_body(params.n, params.top_logprobs, prompt_tokens)

    def _latency_body(self, n: int, k: int | None, prompt_tokens: int) -> bytes:
        """The latency-only reply: its choices serialised once per (n, top_logprobs), then spliced in."""
        choices = self._latency_choices.get((n, k))
        if choices is None:
            tokens = self.reply.split() or [self.reply]
            logprobs = [
                (t, 0.0, [(t, 0.0)] + [(f"<alt{i}>", -10.0 - i) for i in range(max(0, (k or 0) - 1))])
                for t in tokens
            ]
            lps = logprobs if k is not None else None
            choices = (json.dumps(wire_choices([(self.reply, "stop", lps)] * n)).encode(), len(tokens) * n)
            self._latency_choices[(n, k)] = choices
        payload, completion_tokens = choices
        return b'{"id": "chatcmpl-%s-%d", "object": "chat.completion", "created": %d, "model": %s, ' % (
            self._instance.encode(),
            next(self._ids),
            int(time.time()),
            self._model_json,
        ) + b'"choices": %s, "usage": {"prompt_tokens": %d, "completion_tokens": %d, "total_tokens": %d}}' % (
            payload,
            prompt_tokens,
            completion_tokens,
            prompt_tokens + completion_tokens,
        )
