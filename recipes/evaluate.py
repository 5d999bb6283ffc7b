"""Evaluate a video LMM on SafeVidBench: answers (any `safevid.backends` engine) → judge → metrics → report.

```bash
python recipes/evaluate.py --benchmark <org>/safevidbench \
    --model-kind transformers --model <org>/LLaVA-NeXT-Video-7B-SafeVid \
    --judge-kind openai --judge-model Qwen/Qwen2.5-72B-Instruct --judge-base-url http://127.0.0.1:8000/v1 \
    --judge-structured-outputs vllm --output-dir eval/aligned --baseline-run eval/base
```

The same arguments as ``safevid eval`` (a YAML ``--config`` of `safevid.evaluation.harness.EvalConfig` fields,
flags override it). The logic lives in `safevid.evaluation.harness.evaluate_run`; a killed run resumes.
"""

from __future__ import annotations

import sys

from safevid.commands.eval import main

if __name__ == "__main__":
    sys.exit(main())
