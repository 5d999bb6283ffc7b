"""The whole SafeVid loop, offline on CPU, with the same commands a user runs on GPUs.

    make demo            # or: python scripts/demo.py [--seed 0] [--work-dir outputs/demo]

By default it runs the toy video world (`safevid.testing.toyworld`): synthetic clips in which only the pixels
tell a harmful scene from a harmless look-alike, toy-world stand-ins for the 72B models served over the
OpenAI-compatible protocol, and a tiny video LMM fine-tuned into an unsafe base. The loop (`safevid build` ->
SafeVidBench -> `accelerate launch recipes/dpo.py` -> `safevid eval` of base, aligned, and aligned with blank
frames) must make the model safe through the video; the demo prints the table and whether each target is met.

`--random-weights` runs the original plumbing demo instead, on tiny random-weight models:

1. build tiny random-weight checkpoints (a video LMM and a text LLM) and serve each with `safevid serve`,
   an OpenAI-compatible server, as vLLM would serve real ones;
2. `safevid build`: a small SafeVid dataset from generated test videos, through those servers;
3. the SafeVidBench builder: a benchmark from held-out videos (disjoint from the training set);
4. push both through a loopback Hub and `load_dataset` them back, by Hub id and by folder name;
5. `accelerate launch recipes/dpo.py`: video DPO of the tiny video LMM on the pushed data;
6. `safevid eval`: base and aligned models on SafeVidBench, judged through the server; then the metric
   loaded with `evaluate.load("hub/metrics/safevid")`; a report with tables and plots.

Its models are tiny and random, so its numbers are meaningless: it shows that each real code path runs end to end
(loopback Hub included); the commands for real checkpoints are printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORG = "demo"
# The static world: in the temporal one (`--world temporal`), where only the motion tells harmful from harmless,
# no target and recipe tried on CPU has met the targets yet (docs/toyworld.md has the study).
DEFAULT_WORLD = "static"
TEMPORAL_NOT_MET = """
The temporal world (`--world temporal`: the harmful scene and its look-alike differ only in which way they move)
is not the default: no supported family and recipe tried on CPU met its targets (base attack success >= 80%;
aligned attack success and over-refusal <= 10%; reversed harmful clips refused <= 30% and reversed look-alikes
>= 70%; single frame: harmful and look-alike refusal within 20 points). Targets NOT met; the study is in
docs/toyworld.md."""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", default=str(REPO / "outputs" / "demo"), help="Everything goes here.")
    parser.add_argument("--keep", action="store_true", help="Reuse a previous demo's work dir (resume).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the toy world (clips, weights, data).")
    parser.add_argument(
        "--world",
        default=DEFAULT_WORLD,
        help="The toy world: a packaged one's name (static, temporal) or a world YAML (default: %(default)s).",
    )
    parser.add_argument("--random-weights", action="store_true", help="The plumbing demo on random weights.")
    args = parser.parse_args()
    work = Path(args.work_dir).resolve()
    if work.exists() and not args.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not args.random_weights:
        return toy_world(work, args.world, args.seed, started)

    # The Hub libraries read their endpoint once, at import: point them (and every child process) at the
    # loopback Hub before anything imports them.
    from safevid.testing.hub import LoopbackHub

    hub = LoopbackHub(work / "hub").start()
    os.environ.update(hub.client_env())
    os.environ["HF_HOME"] = str(work / "hf_home")  # the loopback Hub's repos never enter the user's cache

    step("Tiny checkpoints: a video LMM (Qwen2-VL architecture) and a text LLM (Qwen2), random weights")
    from safevid.testing.tiny_models import build_tiny_model

    vlm, llm = build_tiny_model("qwen2_vl"), build_tiny_model("text")
    servers = [serve(vlm, "tiny-qwen2-vl", work), serve(llm, "tiny-text", work)]
    try:
        vlm_url, llm_url = (wait_ready(*s) for s in servers)
        run_loop(work, vlm, vlm_url, llm_url)
    finally:
        for process, _ in servers:
            process.terminate()
        hub.stop()
    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s. Everything is under {work}.")
    print(REAL_SCALE)
    return 0


def toy_world(work: Path, world: str, seed: int, started: float) -> int:
    """The toy world's loop; prints the side-by-side table and whether each target is met.

    The targets are asserted by `tests/test_toyworld.py` (the full world, 3 seeds, is a slow test); the demo reports
    them, so a missed target on another seed is shown, not turned into a failed command."""
    from safevid.testing.toyworld.loop import format_results, run_loop, targets
    from safevid.testing.toyworld.world import ToyWorld

    loaded = ToyWorld.load(world)
    results = run_loop(REPO, work, world=world, seed=seed, echo=lambda line: print(line, flush=True))
    print(
        f"\nToy world {loaded.data['name']!r}, seed {seed}: attack success and refusal on harmful items, "
        "over-refusal on look-alikes"
    )
    print(format_results(loaded, results))
    if world == "static" and DEFAULT_WORLD == "static":
        print(TEMPORAL_NOT_MET)
    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s. Reports: {work / 'eval'}/*/report.md")
    print(REAL_SCALE.replace("These numbers are meaningless: the models are tiny and random. ", ""))
    missed = [name for name, _, ok in targets(loaded, results) if not ok]
    if missed:
        print(f"\nWARNING: {len(missed)} target(s) missed on seed {seed}: {'; '.join(missed)}")
    return 0


def run_loop(work: Path, vlm: Path, vlm_url: str, llm_url: str) -> None:
    """Steps 2-6, each a command a user types; `vlm` is also loaded in-process for answering and training."""
    vlm_server = {
        "kind": "openai",
        "model": "tiny-qwen2-vl",
        "base_url": vlm_url,
        "structured_outputs": "vllm",
    }
    llm_server = {"kind": "openai", "model": "tiny-text", "base_url": llm_url, "structured_outputs": "vllm"}
    served = {"describer": vlm_server, "target": vlm_server, "llm": llm_server}
    build_config = with_models(REPO / "hub/datasets/safevid-350k/config_demo.yaml", served)
    build_config["publish"]["card_template"] = str(REPO / "hub/datasets/safevid-350k/card_template.md.jinja")
    write_yaml(work / "build.yaml", build_config)

    step("SafeVid build through the OpenAI-compatible servers (default output folder: ./safevid-350k)")
    sh(["safevid", "build", "--config", "build.yaml", "--push-to-hub", f"{ORG}/safevid-350k"], work)

    bench_config = load_yaml(REPO / "hub/datasets/safevidbench/config_demo.yaml")
    bench_config["pipeline"] = with_models_inline(bench_config["pipeline"], served)
    bench_config["card_template"] = str(REPO / "hub/datasets/safevidbench/card_template.md.jinja")
    bench_config["exclude"] = {
        "datasets": [{"dataset": "safevid-350k", "split": "train"}],
        "video_id_files": [],
    }
    write_yaml(work / "bench.yaml", bench_config)
    step("SafeVidBench from held-out videos (training videos excluded by hash)")
    sh([sys.executable, str(REPO / "hub/datasets/safevidbench/build.py"), "--config", "bench.yaml",
        "--push-to-hub", f"{ORG}/safevidbench"], work)  # fmt: skip

    step("load_dataset: by folder name right after a build, and by Hub id once pushed")
    sh([sys.executable, "-c", LOAD_CHECK], work)

    step("Video DPO on TRL: accelerate launch recipes/dpo.py (LoRA, CPU)")
    sh(["accelerate", "launch", "--cpu", "--num_processes", "1", str(REPO / "recipes/dpo.py"),
        "--config", str(REPO / "recipes/tiny/dpo/config_lora.yaml"),
        "--model_name_or_path", str(vlm), "--dataset_name", f"{ORG}/safevid-350k",
        "--output_dir", "aligned", "--push_to_hub", "true", "--hub_model_id", f"{ORG}/tiny-qwen2-vl-safevid"],
       work)  # fmt: skip

    step("SafeVidBench: base and aligned models, judged through the LLM server")
    judge = ["--judge-kind", "openai", "--judge-model", "tiny-text", "--judge-base-url", llm_url,
             "--judge-structured-outputs", "vllm"]  # fmt: skip
    bench = ["--benchmark", f"{ORG}/safevidbench", "--model-kind", "transformers", "--max-tokens", "16"]
    sh(["safevid", "eval", *bench, "--model", str(vlm), "--model-name", "base", *judge,
        "--output-dir", "eval/base"], work)  # fmt: skip
    sh(["safevid", "eval", *bench, "--model", "aligned", "--model-name", "aligned", *judge,
        "--output-dir", "eval/aligned", "--baseline-run", "eval/base"], work)  # fmt: skip

    step('The metric on its own: evaluate.load("hub/metrics/safevid")')
    sh([sys.executable, "-c", METRIC_CHECK, str(REPO / "hub/metrics/safevid"), "tiny-text", llm_url], work)
    print(f"\nReport: {work / 'eval/aligned/report.md'}")


# The checks run in fresh interpreters, as a user's script would.
LOAD_CHECK = """
from datasets import load_dataset
local = load_dataset("safevid-350k", split="train")
hub = load_dataset("demo/safevid-350k", split="train")
conv = load_dataset("demo/safevid-350k", "conversational", split="train")
bench = load_dataset("demo/safevidbench", split="test")
assert local["id"] == hub["id"] == conv["id"], "the pushed dataset differs from the local build"
print(f"safevid-350k: {len(local)} pairs (local folder == Hub == conversational config); safevidbench: {len(bench)} items")
print("first pair:", {k: local[0][k] for k in ("subcategory", "query_style", "prompt")})
"""

METRIC_CHECK = """
import json, sys
import evaluate
module, judge_model, judge_url = sys.argv[1:]
rows = [json.loads(line) for line in open("eval/aligned/answers.jsonl")]
metric = evaluate.load(module)
result = metric.compute(
    predictions=[r["response"] for r in rows],
    queries=[r["prompt"] for r in rows],
    categories=[r["subcategory"] for r in rows],
    query_styles=[r["query_style"] for r in rows],
    descriptions=[r["description"] for r in rows],
    judge={"kind": "openai", "model": judge_model, "base_url": judge_url, "structured_outputs": "vllm"},
)
print({k: result[k] for k in ("harmlessness_rate", "attack_success_rate", "over_refusal_rate", "undetermined_rate") if k in result})
"""

REAL_SCALE = """
These numbers are meaningless: the models are tiny and random. With real checkpoints on GPUs:

  vllm serve Qwen/Qwen2.5-VL-72B-Instruct --port 8000 -tp 4     # describer
  vllm serve Qwen/Qwen2.5-72B-Instruct --port 8001 -tp 4        # classifier, queries, chosen, judge
  vllm serve llava-hf/LLaVA-NeXT-Video-7B-hf --port 8002        # target model: rejected responses
  safevid build --config hub/datasets/safevid-350k/config_350k.yaml --push-to-hub <org>/safevid-350k
  accelerate launch --config_file recipes/accelerate_configs/zero3.yaml recipes/dpo.py \\
      --config recipes/LLaVA-NeXT-Video-7B/dpo/config_lora.yaml
  safevid eval --benchmark <org>/safevidbench --model-kind vllm --model <aligned checkpoint> \\
      --judge-kind openai --judge-model Qwen/Qwen2.5-72B-Instruct --judge-base-url http://127.0.0.1:8001/v1
"""


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def sh(command: list[str], cwd: Path) -> None:
    """Run one user-facing command, printed as a user would type it; stop the demo if it fails."""
    shown = command
    if "-c" in command:  # an inline check script: show its first line, not the whole program
        at = command.index("-c") + 1
        shown = [*command[:at], command[at].strip().splitlines()[0] + " ...", *command[at + 1 :]]
    print("$ " + " ".join(shlex.quote(c) for c in shown), flush=True)
    subprocess.run(command, cwd=cwd, check=True, env={**os.environ, "PATH": path_with_venv()})


def path_with_venv() -> str:
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def serve(model: Path, name: str, work: Path) -> tuple[subprocess.Popen, Path]:
    """`safevid serve` on a free port; the port is read back from the server's own log."""
    log = work / f"serve-{name}.log"
    command = ["safevid", "serve", str(model), "--model-name", name, "--port", "0"]
    print("$ " + " ".join(command) + " &", flush=True)
    handle = log.open("w")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                               env={**os.environ, "PATH": path_with_venv()})  # fmt: skip
    return process, log


def wait_ready(process: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> str:
    """Wait until the server's log names its URL and `/v1/models` answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"`safevid serve` exited early; see {log}:\n{log.read_text()}")
        for word in log.read_text().split():
            if word.startswith("http://127.0.0.1:") and word.rstrip("/").endswith("/v1"):
                url = word.rstrip("/")
                try:
                    urllib.request.urlopen(url + "/models", timeout=2).close()
                    return url
                except OSError:
                    pass
        time.sleep(0.2)
    raise TimeoutError(f"`safevid serve` did not come up in {timeout_s:.0f} s; see {log}")


def load_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def write_yaml(path: Path, data: dict) -> None:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))


def with_models(path: Path, served: dict) -> dict:
    return with_models_inline(load_yaml(path), served)


def with_models_inline(config: dict, served: dict) -> dict:
    """The demo config with each named model pointed at its server instead of loaded in-process."""
    config = json.loads(json.dumps(config))
    config["models"] = {name: served[name] for name in config["models"]}
    return config


if __name__ == "__main__":
    sys.exit(main())
