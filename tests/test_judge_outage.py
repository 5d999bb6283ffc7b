"""A judge that cannot be reached is an error to retry, never a verdict: in the build's gates and in evaluation.

The judge is the fault-injecting OpenAI-compatible server on loopback, answering HTTP 500 to every request during
the first run and answering again for the rerun (the same server, its faults switched off, so the build's
configuration does not change between the runs).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from test_pipeline_build import DEMO, read_rows, write_mini_taxonomy

from safevid.testing.server import FaultConfig, FaultInjectingServer


def _config(tmp: Path, judge: FaultInjectingServer) -> Path:
    config = yaml.safe_load(DEMO.read_text())
    config["output_dir"] = str(tmp / "out")
    config["taxonomy"] = str(write_mini_taxonomy(tmp / "taxonomy.yaml"))
    config["inputs"] = [{"test_videos": 2}]
    config["classify"].update(votes=4, max_labels=2)
    config["queries"].update(per_style={"explicit": 1, "temporal": 1, "benign_contrast": 1})
    config["publish"]["card_template"] = str(DEMO.parent / "card_template.md.jinja")
    config["models"]["judge"] = {
        "kind": "openai",
        "model": judge.model_name,
        "base_url": judge.base_url,
        "structured_outputs": "none",  # parse and validate the digit: no probe request
        "max_retries": 1,
        "backoff_base_s": 0.01,
    }
    config["gates"]["judge_model"] = "judge"
    for spec in config["models"].values():
        spec["cache_dir"] = str(tmp / "cache")
    path = tmp / "build.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_a_judge_outage_during_gates_keeps_every_pair_pending_and_the_rerun_publishes_them(tmp_path, capsys):
    from safevid.cli import main
    from safevid.pipeline.store import ERROR, OK, RecordStore

    with FaultInjectingServer(latency_only=True, reply="1", faults=FaultConfig(error_500_rate=1.0)) as judge:
        config = _config(tmp_path, judge)
        assert main(["build", "--config", str(config)]) == 1
        out = capsys.readouterr().out
        assert "judge_status_500" in out
        assert "did not complete" in out
        assert "Relaunch the build to retry them" in out
        assert not (tmp_path / "out" / "data").exists()
        [store_path] = (tmp_path / "out" / ".safevid-build").glob("shard-*.sqlite")
        with RecordStore(store_path, readonly=True) as store:
            pairs = [r.key for r in store.iter_stage("pair", OK)]
            gates = list(store.iter_stage("gate", None))
        assert pairs
        assert sorted(r.key for r in gates) == sorted(pairs)
        assert {(r.status, r.reason) for r in gates} == {(ERROR, "judge_status_500")}
        assert all("verdicts" not in r.data for r in gates)  # no verdict was made up for them

        judge.faults = FaultConfig()  # the judge is back
        assert main(["build", "--config", str(config)]) == 0
    rows = read_rows(tmp_path / "out", "default")
    assert len(rows) == len(pairs)  # every pair judged and published (record mode drops none)
