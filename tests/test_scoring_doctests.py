"""The examples in the scoring and taxonomy docstrings run, so they cannot drift from the code."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "safevid.scoring.verdict",
    "safevid.scoring.refusal",
    "safevid.scoring.metrics",
    "safevid.scoring.calibration",
    "safevid.taxonomy.taxonomy",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
