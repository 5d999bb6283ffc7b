"""Run every benchmark script in this folder and collect their tables into one Markdown file.

Each benchmark is a standalone script that prints a Markdown table of side-by-side measurements
and ratios; this runner only sequences them (one at a time, so they do not compete for cores)
and writes ``bench-results/BENCHMARKS.md``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    out_dir = HERE.parent / "bench-results"
    out_dir.mkdir(exist_ok=True)
    sections, failed = [], []
    for script in sorted(HERE.glob("*.py")):
        if script.name == Path(__file__).name:
            continue
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        print(proc.stdout, end="")
        if proc.returncode != 0:
            failed.append(script.name)
            print(proc.stderr, file=sys.stderr)
        status = "" if proc.returncode == 0 else f" — FAILED (exit {proc.returncode})"
        sections.append(f"## {script.stem}{status}\n\n_{elapsed:.0f} s_\n\n{proc.stdout.strip()}\n")
    report = out_dir / "BENCHMARKS.md"
    report.write_text("# safevid benchmarks\n\n" + "\n".join(sections))
    print(f"\nwrote {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
