"""Resume: SIGKILL the build (a real subprocess) at checkpoints across every stage, rerun it, and get exactly
the dataset of an uninterrupted run — nothing lost, nothing duplicated.

Kill points are the checkpoints around every commit (``SAFEVID_BUILD_KILL_AT=<n>`` kills the process at
its n-th checkpoint with SIGKILL: no cleanup, no flush). Each rerun resumes from the store and is killed
again a few checkpoints later, ten times, then left to finish. The uninterrupted reference uses its own response
cache, so the equality also shows that generation is a function of the record keys, not of what was
cached or of how the work was cut into runs.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml
from test_pipeline_build import DEMO, read_rows, write_mini_taxonomy

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "hub" / "datasets" / "safevid-350k" / "build.py"


def _write_config(tmp: Path, name: str) -> Path:
    config = yaml.safe_load(DEMO.read_text())
    config["output_dir"] = str(tmp / name)
    config["taxonomy"] = str(write_mini_taxonomy(tmp / "taxonomy.yaml"))
    config["inputs"] = [{"test_videos": 2}]
    config["classify"].update(votes=4, max_labels=2, batch_size=1)
    config["describe"]["batch_size"] = 1
    config["queries"].update(per_style={"explicit": 1, "temporal": 1, "benign_contrast": 1}, batch_size=3)
    config["responses"]["batch_size"] = 3
    config["gates"]["batch_size"] = 3
    config["publish"].update(
        rows_per_row_group=2, rows_per_shard=4, card_template=str(DEMO.parent / "card_template.md.jinja")
    )
    for spec in config["models"].values():
        spec["cache_dir"] = str(tmp / f"cache-{name}")  # operational: not part of the fingerprint
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _build(config: Path, log: Path, kill_at: int | None = None) -> int:
    env = {**os.environ, "SAFEVID_BUILD_CHECKPOINT_LOG": str(log)}
    env.pop("SAFEVID_BUILD_KILL_AT", None)
    if kill_at is not None:
        env["SAFEVID_BUILD_KILL_AT"] = str(kill_at)
    done = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode in (0, -signal.SIGKILL), done.stdout[-2000:] + done.stderr[-4000:]
    return done.returncode


def test_sigkill_at_checkpoints_across_stages_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    from safevid.pipeline import load_build_config, run_build
    from safevid.pipeline.store import RecordStore

    # The uninterrupted reference runs in this process (same code, no interpreter start-up to pay).
    reference = _write_config(tmp_path, "reference")
    monkeypatch.setenv("SAFEVID_BUILD_CHECKPOINT_LOG", str(tmp_path / "reference.log"))
    run_build(load_build_config(reference))
    checkpoints = (tmp_path / "reference.log").read_text().split()
    stages = {name.split(":")[0] for name in checkpoints}
    assert stages == {"ingest", "describe", "classify", "query", "pair", "gate", "publish"}

    resumed = _write_config(tmp_path, "resumed")
    log = tmp_path / "resumed.log"
    # Each run resumes and is killed 1-3 checkpoints later (a kill before a commit makes the rerun redo
    # that batch). Publish restarts from scratch on every run, so after 10 kills the last run is left to
    # finish.
    rng = random.Random(0)
    for _ in range(10):
        if _build(resumed, log, kill_at=rng.randint(2, 4)) == 0:
            break
    else:
        assert _build(resumed, log) == 0
    killed = [line.split()[0] for line in log.read_text().splitlines() if line.endswith(" KILL")]
    assert len(killed) >= 10
    assert len({k.split(":")[0] for k in killed}) >= 5, f"kills should span the stages, got {Counter(killed)}"

    for name in ("default", "conversational"):
        expected = read_rows(tmp_path / "reference", name)
        got = read_rows(tmp_path / "resumed", name)
        assert len(expected) >= 6
        assert [r["id"] for r in got] == [r["id"] for r in expected]  # nothing lost, nothing duplicated
        assert got == expected
    stores = {}
    for name in ("reference", "resumed"):
        with RecordStore(
            tmp_path / name / ".safevid-build" / "shard-00000-of-00001.sqlite", readonly=True
        ) as store:
            stores[name] = store.counts()
    assert stores["resumed"] == stores["reference"]


def test_sigkill_mid_stream_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    """Killed while requests are in flight and finished records wait for their commit (large commit groups),
    in different stages, each rerun resumes: the result equals an uninterrupted run, nothing lost or doubled."""
    from safevid.pipeline import load_build_config, run_build
    from safevid.pipeline.store import RecordStore

    def config(name: str) -> Path:
        path = _write_config(tmp_path, name)
        data = yaml.safe_load(path.read_text())
        for stage in ("describe", "classify", "queries", "responses", "gates"):
            data[stage]["batch_size"] = 64  # one commit per stage: a kill always finds uncommitted records
        path.write_text(yaml.safe_dump(data))
        return path

    run_build(load_build_config(config("reference")))
    resumed = config("resumed")
    log = tmp_path / "resumed.log"
    env = {**os.environ, "SAFEVID_BUILD_CHECKPOINT_LOG": str(log)}
    kills = 0
    for kill_at in (3, 5, 9, 14, 20, 27):  # counted per run: each rerun gets further before its kill
        env["SAFEVID_BUILD_KILL_AT_RESULT"] = str(kill_at)
        done = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--config", str(resumed)], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode in (0, -signal.SIGKILL), done.stderr[-4000:]
        kills += done.returncode == -signal.SIGKILL
    env.pop("SAFEVID_BUILD_KILL_AT_RESULT")
    done = subprocess.run([sys.executable, str(BUILD_SCRIPT), "--config", str(resumed)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    killed = [line.split()[0] for line in log.read_text().splitlines() if line.endswith(":result KILL")]
    assert kills >= 3
    assert len(killed) == kills
    assert len(set(killed)) >= 2, f"mid-stream kills should span stages, got {killed}"

    for name in ("default", "conversational"):
        expected = read_rows(tmp_path / "reference", name)
        got = read_rows(tmp_path / "resumed", name)
        assert [r["id"] for r in got] == [r["id"] for r in expected]
        assert got == expected
    counts = []
    for name in ("reference", "resumed"):
        with RecordStore(
            tmp_path / name / ".safevid-build" / "shard-00000-of-00001.sqlite", readonly=True
        ) as store:
            counts.append(store.counts())
    assert counts[0] == counts[1]
