"""The SafeVid-350K build pipeline: videos → descriptions → rule-driven queries and responses → Hub dataset.

Each stage is a library function over a [`RecordStore`] (records keyed by content hash, on disk), so a
build can be killed at any point and resumed, and partitioned by ``--shard i --num-shards N`` across
workers whose stores one publish step merges:

0. `ingest`: folders, list files of paths/URLs, or a dataset's video column → probed, sampled videos.
1. `describe`: a video LMM writes a detailed, time-ordered description.
2. `classify`: an LLM maps the description to the taxonomy (choice-constrained votes) and cites rules.
3. `queries`: rule-driven queries per (video, subcategory, style, variant).
4. `responses`: chosen (rule-guided) and rejected (non-aligned source / needless refusal) replies.
5. `gates`: empty/identical pairs and the safety judge, per pair; duplicates and benchmark
   contamination across the whole set at publish time.
6. `publish`: Parquet shards (``default`` and ``conversational`` configs), dataset card, manifest.

Entry points: `run_build` (library), ``safevid build --config ...`` and
``python hub/datasets/safevid-350k/build.py --config ...``.
"""

from safevid.pipeline.config import BuildConfig, ConfigError, load_build_config
from safevid.pipeline.run import BuildResult, run_build

__all__ = ["BuildConfig", "BuildResult", "ConfigError", "load_build_config", "run_build"]
