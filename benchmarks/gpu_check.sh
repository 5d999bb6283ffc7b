#!/usr/bin/env bash
# The prepared GPU check of video DPO at the 7B shapes: one command that ends well inside 8 minutes.
#
# 1. Where pip can reach PyPI (any x86-64 or Arm machine): fetch the wheels the GPU machine lacks or holds in
#    older versions (CPython 3.12, x86-64 Linux; 51 MB, PyAV's bundled FFmpeg being most of it):
#        bash benchmarks/gpu_check.sh --download .whl
# 2. On the GPU machine (PyTorch, accelerate and pandas/pyarrow installed; nothing downloadable), from the
#    repository root with that folder beside it:
#        bash benchmarks/gpu_check.sh .whl [OUT_DIR]
#    It installs the wheels into /tmp/safevid-site (the system environment is left as it is), prints the device
#    and the versions, and runs benchmarks/gpu_dpo_step.py, which starts no new setting after 330 s; the table
#    is printed and written to OUT_DIR/gpu_dpo_step.md (OUT_DIR defaults to $OUT, else bench-results).
set -euo pipefail

# What the training path imports beyond the GPU image, at the versions the project is tested with
# (constraints.txt; dill, multiprocess and regex as its environment resolves them).
WHEELS=(
    transformers==5.24.0 trl==1.16.0 peft==0.21.2 datasets==5.2.0 av==18.1.0
    dill==0.4.1 multiprocess==0.70.19 regex==2026.12.2
)

if [[ "${1:-}" == "--download" ]]; then
    folder="${2:?usage: gpu_check.sh --download FOLDER}"
    platforms=()
    for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
        platforms+=(--platform "$tag")
    done
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d "$folder" "${WHEELS[@]}"
    du -sh "$folder"
    exit 0
fi

wheels="${1:?usage: gpu_check.sh WHEEL_FOLDER [OUT_DIR]  (or --download FOLDER)}"
out="${2:-${OUT:-bench-results}}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/safevid-site "$wheels"/*.whl
export PYTHONPATH="/tmp/safevid-site:$PWD/src" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 - <<'PY'
import importlib.metadata as metadata
import sys

versions = {name: metadata.version(name) for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "pyarrow", "av")}
print("python", sys.version.split()[0], versions)
major = int(versions["pyarrow"].split(".")[0])
if major < 24:
    sys.exit(f"datasets 5.2 needs pyarrow>=24, this machine has {versions['pyarrow']}: add pyarrow's wheel to the folder.")
PY

timeout 450 python3 benchmarks/gpu_dpo_step.py --budget-s 330 | tee "$out/gpu_dpo_step.md"
