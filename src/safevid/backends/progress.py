"""Progress of a batch: a tqdm bar (throughput, retries, failures) and the end-of-batch summary."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from safevid.backends.types import ChatResult

logger = logging.getLogger(__name__)

# Below this many requests a bar is noise; callers can still force it with progress=True.
AUTO_PROGRESS_MIN_REQUESTS = 32


@dataclass
class BatchSummary:
    """What happened to a batch: successes, failures by reason, retries, cache hits and tokens."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    elapsed_s: float = 0.0

    @property
    def requests_per_s(self) -> float:
        return self.total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def __str__(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.failed_by_reason.items())) or "none"
        return (
            f"{self.total} requests in {self.elapsed_s:.1f}s ({self.requests_per_s:.1f}/s): ok={self.ok} "
            f"failed={self.failed} ({reasons}) retries={self.retries} cached={self.cached} "
            f"tokens={self.prompt_tokens}+{self.completion_tokens}"
        )


class BatchProgress:
    """Counts outcomes as they land and drives an optional tqdm bar.

    Args:
        total: Number of requests in the batch.
        enabled: Show a bar; `None` shows one for batches of at least `AUTO_PROGRESS_MIN_REQUESTS`.
        desc: The bar's label.
    """

    def __init__(self, total: int, enabled: bool | None = None, desc: str = "generate") -> None:
        self.total = total
        self._start = time.perf_counter()
        self._failures: Counter[str] = Counter()
        self._ok = self._cached = self._retries = self._prompt = self._completion = 0
        show = total >= AUTO_PROGRESS_MIN_REQUESTS if enabled is None else enabled
        self._bar: Any = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True)

    def retry(self) -> None:
        self._retries += 1
        self._refresh()

    def done(self, result: ChatResult) -> None:
        if result.ok:
            self._ok += 1
            self._cached += result.cached
            self._prompt += result.usage.prompt_tokens
            self._completion += result.usage.completion_tokens
        else:
            assert result.error is not None
            self._failures[result.error.reason] += 1
        if self._bar is not None:
            self._bar.update(1)
            self._refresh()

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix(
                ok=self._ok,
                failed=sum(self._failures.values()),
                retries=self._retries,
                cached=self._cached,
                refresh=False,
            )

    def close(self) -> BatchSummary:
        """Close the bar, log and return the summary."""
        if self._bar is not None:
            self._bar.close()
        summary = BatchSummary(
            total=self.total,
            ok=self._ok,
            failed=sum(self._failures.values()),
            failed_by_reason=dict(self._failures),
            retries=self._retries,
            cached=self._cached,
            prompt_tokens=self._prompt,
            completion_tokens=self._completion,
            elapsed_s=time.perf_counter() - self._start,
        )
        logger.info("batch done: %s", summary)
        return summary
