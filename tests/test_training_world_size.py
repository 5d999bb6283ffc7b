"""The DPO recipe refuses a run that got fewer processes than its launcher was asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_accelerate_asked_for_two_processes_on_a_cpu_machine_is_refused(tmp_path):
    # Without --multi_gpu, accelerate's simple launcher starts one process: the recipe must not train on it.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(
        [str(BIN / "accelerate"), "launch", "--cpu", "--num_processes", "2", "--mixed_precision", "no",
         str(ROOT / "recipes" / "dpo.py"), "--config", str(ROOT / "recipes" / "tiny" / "dpo" / "config_lora.yaml"),
         "--dataset_name", str(tmp_path / "none"),
         "--model_name_or_path", str(tmp_path / "none"), "--output_dir", str(tmp_path / "out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "is the only one (no WORLD_SIZE)" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("environ", "refused"),
    [
        ({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, True),  # accelerate's simple launcher, N > 1
        (
            {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "2", "RANK": "1"},
            False,
        ),  # torchrun
        ({"MASTER_ADDR": "node-0", "OMPI_COMM_WORLD_SIZE": "4"}, False),  # mpirun starts every rank
        ({}, False),  # python recipes/dpo.py: one process, as asked
    ],
)
def test_world_size_check(environ, refused):
    from safevid.training.run import check_world_size

    if refused:
        with pytest.raises(RuntimeError, match=r"MASTER_ADDR=127\.0\.0\.1"):
            check_world_size(environ)
    else:
        check_world_size(environ)
