"""`safevid eval` with a judge that cannot be reached: a warning, and a non-zero exit past the allowed share."""

from __future__ import annotations

import socket

import pytest
import yaml
from test_evaluation_harness import write_bench

from safevid.commands.eval import main
from safevid.evaluation.scorer import JudgeErrorWarning
from safevid.testing.server import FaultInjectingServer


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_eval_fails_when_judge_errors_exceed_the_allowed_share(tmp_path, capsys):
    bench = write_bench(tmp_path / "safevidbench", tmp_path / "videos")
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
            "output_dir": str(tmp_path / "run"),
        }
        config_file = tmp_path / "eval.yaml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        with pytest.warns(JudgeErrorWarning, match=r"failed on 6 of 6 item\(s\)"):
            assert main(["--config", str(config_file)]) == 1
        out = capsys.readouterr().out
        assert "the judge failed on 6 of 6 item(s), more than --max-judge-error-rate 0.05" in out
        assert "connection" in out  # the first errors are named
        assert "no model card written" in out
        # The share is configurable: a run that tolerates every error exits 0 (judgements resumed, not redone).
        with pytest.warns(JudgeErrorWarning):
            assert main(["--config", str(config_file), "--max-judge-error-rate", "1"]) == 0
