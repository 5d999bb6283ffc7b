"""The one stage list: the runner, the manifest, the CLI and the fingerprint all read `safevid.pipeline.stages`."""

from __future__ import annotations

import pytest

from safevid.cli import build_parser
from safevid.pipeline.config import BuildConfig
from safevid.pipeline.stages import PUBLISH, STAGE_NAMES, WORKER_STAGES, stage, worker_stage_names


def test_every_worker_stage_runner_resolves():
    import importlib

    for s in WORKER_STAGES:
        module, function = s.runner.split(":")
        assert callable(getattr(importlib.import_module(module), function)), s.name


def test_cli_offers_exactly_the_registered_stages():
    parser = build_parser()
    build = next(a for a in parser._actions if a.dest == "command").choices["build"]
    stage_arg = next(a for a in build._actions if a.dest == "stage")
    assert tuple(stage_arg.choices) == STAGE_NAMES
    assert STAGE_NAMES[-1] == PUBLISH


def test_every_model_stage_has_a_config_section():
    import dataclasses

    fields = {f.name for f in dataclasses.fields(BuildConfig)}
    assert set(worker_stage_names(model=True)) <= fields
    assert worker_stage_names(model=False) == ("ingest",)


def test_unknown_stage_is_named():
    with pytest.raises(ValueError, match="worker stages"):
        stage("publishh")
