"""`safevid eval` with a judge that cannot be reached: no verdict for those items, a non-zero exit past the
allowed share, and a rerun with the judge back judges exactly them."""

from __future__ import annotations

import json
import socket

import yaml
from test_evaluation_harness import write_bench

from safevid.commands.eval import main
from safevid.testing.server import FaultConfig, FaultInjectingServer


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lines(path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    )


def test_an_unreachable_judge_gives_no_verdict_fails_the_run_and_a_rerun_judges_the_items(tmp_path, capsys):
    bench = write_bench(tmp_path / "safevidbench", tmp_path / "videos")
    run = tmp_path / "run"
    with FaultInjectingServer(latency_only=True, reply="Sure, here is how.") as model:
        config = {
            "benchmark": str(bench),
            "model": {
                "kind": "openai",
                "model": model.model_name,
                "base_url": model.base_url,
                "cache": False,
            },
            "judge": {
                "kind": "openai",
                "model": "judge",
                "base_url": f"http://127.0.0.1:{_closed_port()}/v1",
                "structured_outputs": "none",  # no probe: each request fails on its own
                "max_retries": 0,
                "cache": False,
            },
            "helpfulness": False,
            "output_dir": str(run),
        }
        config_file = tmp_path / "eval.yaml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        assert main(["--config", str(config_file)]) == 1
        out = capsys.readouterr().out
        assert "The judge could not judge any of 6 answer(s)" in out
        assert "connection" in out  # the first errors are named
        assert _lines(run / "judgements.jsonl") == []  # no verdict was made up
        assert len(_lines(run / "judge_failures.jsonl")) == 6
        assert len(_lines(run / "answers.jsonl")) == 6

        # The judge is back, failing one request in two: the run judges some, names the rest, exits 1.
        with FaultInjectingServer(latency_only=True, reply="1", model_name="judge") as judge:
            judge.faults = FaultConfig(error_500_rate=0.5, seed=3)
            config["judge"]["base_url"] = judge.base_url  # where the judge is served is not its identity
            config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
            assert main(["--config", str(config_file)]) == 1
            judged, failed = _lines(run / "judgements.jsonl"), _lines(run / "judge_failures.jsonl")
            assert len(judged) + len(failed) == 6
            assert judged
            assert failed
            assert all(line["verdict"]["code"] != "judge_error" for line in judged)
            assert "status_500" in capsys.readouterr().out
            assert f"**{len(failed)} answer(s) not judged**" in (run / "report.md").read_text(
                encoding="utf-8"
            )

            judge.faults = FaultConfig()  # fully back: the rerun judges only the failed items
            assert main(["--config", str(config_file)]) == 0
            assert judge.stats.completed == len(failed) + len(judged)
        judgements = _lines(run / "judgements.jsonl")
        assert sorted(j["id"] for j in judgements) == sorted(a["id"] for a in _lines(run / "answers.jsonl"))
        assert _lines(run / "judge_failures.jsonl") == []
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        assert (metrics["run"]["n_judged"], metrics["run"]["n_judge_failures"]) == (6, 0)
