"""The build's stages, in pipeline order: the one list the runner, the manifest, the CLI and SafeVidBench read.

Each worker stage has the name users type (``--stage queries``), the name its records carry in the record store
(``query``: one record per query, not per stage run) and the function that runs it. ``publish`` follows the
worker stages and merges every shard's store; it is a stage of the command line, not of a worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from safevid.pipeline.context import BuildContext
    from safevid.pipeline.store import RecordStore

__all__ = ["PUBLISH", "STAGE_NAMES", "WORKER_STAGES", "Stage", "stage", "worker_stage_names"]


@dataclass(frozen=True)
class Stage:
    """One worker stage of the build.

    Attributes:
        name: What users and manifests call it (``--stage NAME``).
        record_kind: The ``stage`` column of the records it writes in the record store.
        runner: ``module:function`` running it over one shard's store; imported when the stage runs, so that
            reading the list stays light.
        model: Whether it calls a model, and so has a config section with its model and ``batch_size``.
    """

    name: str
    record_kind: str
    runner: str
    model: bool = True

    def run(self, ctx: BuildContext, store: RecordStore) -> None:
        """Run this stage over ``store``."""
        module, function = self.runner.split(":")
        run: Callable[[BuildContext, RecordStore], None] = getattr(importlib.import_module(module), function)
        run(ctx, store)


WORKER_STAGES: tuple[Stage, ...] = (
    Stage("ingest", "source", "safevid.pipeline.ingest:run_ingest", model=False),
    Stage("describe", "describe", "safevid.pipeline.describe:run_describe"),
    Stage("classify", "classify", "safevid.pipeline.classify:run_classify"),
    Stage("queries", "query", "safevid.pipeline.queries:run_queries"),
    Stage("responses", "pair", "safevid.pipeline.responses:run_responses"),
    Stage("gates", "gate", "safevid.pipeline.gates:run_gates"),
)
PUBLISH = "publish"
# Every name `--stage` takes, in the order they run.
STAGE_NAMES: tuple[str, ...] = (*(s.name for s in WORKER_STAGES), PUBLISH)


def stage(name: str) -> Stage:
    """The worker stage called ``name``."""
    for s in WORKER_STAGES:
        if s.name == name:
            return s
    raise ValueError(f"Unknown worker stage {name!r}; worker stages: {worker_stage_names()}")


def worker_stage_names(*, model: bool | None = None) -> tuple[str, ...]:
    """The worker stages' names in pipeline order; with ``model``, only those that do (or do not) call a model."""
    return tuple(s.name for s in WORKER_STAGES if model is None or s.model == model)
