"""What every stage shares: config, taxonomy, prompt templates, backends, shard, seeds, checkpoints.

Checkpoints are named points around every commit (`safevid.backends.scheduler.Checkpoints` under the prefix
``SAFEVID_BUILD``), so resume can be proven by killing the build for real:

- ``SAFEVID_BUILD_CHECKPOINT_LOG=<file>``: append each checkpoint's name, one per line.
- ``SAFEVID_BUILD_KILL_AT=<n>``: SIGKILL this process at its n-th checkpoint (no cleanup runs, as in a
  node failure or an OOM kill).
- ``SAFEVID_BUILD_RAISE_AT=<shard>:<n>``: raise `safevid.backends.scheduler.InjectedFailure` at shard
  ``<shard>``'s n-th checkpoint (a task that crashes while its siblings go on, as the engine tests need).
- ``SAFEVID_BUILD_KILL_AT_RESULT=<n>``: SIGKILL it when the n-th result of a streamed stage lands, before
  it is committed (mid-stream: other requests in flight, finished records not yet committed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safevid.backends.scheduler import Checkpoints
from safevid.pipeline.config import BuildConfig
from safevid.plugins import resolve_model
from safevid.prompts import PromptLibrary
from safevid.taxonomy import Taxonomy, load_taxonomy

# Templates the pipeline renders (each with the macro file it imports) — their hashes are provenance.
PIPELINE_TEMPLATES = (
    "describe",
    "classify",
    "classify_rules",
    "query",
    "chosen",
    "rejected_comply",
    "needless_refusal",
    "judge_risk",
    "judge_risk_choice",
)


def shard_of(source_key: str, num_shards: int) -> int:
    """The shard a source belongs to: its SHA-256, as an integer, modulo the shard count."""
    return int(hashlib.sha256(source_key.encode()).hexdigest()[:15], 16) % num_shards


def stable_hash(*parts: Any, length: int = 32) -> str:
    """A hex content hash of JSON-serialisable parts (the record keys)."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


@dataclass
class BuildContext:
    """The shared state of one build process (one shard)."""

    config: BuildConfig
    shard: int = 0
    num_shards: int = 1
    progress: bool = False
    taxonomy: Taxonomy = field(init=False)
    prompts: PromptLibrary = field(init=False)
    checkpoint: Checkpoints = field(default_factory=lambda: Checkpoints("SAFEVID_BUILD"))
    _backends: dict[str, Any] = field(default_factory=dict)
    _decode_pool: Any = None

    def __post_init__(self) -> None:
        if not 0 <= self.shard < self.num_shards:
            raise ValueError(f"--shard must be in 0..{self.num_shards - 1}, got {self.shard}")
        self.checkpoint.part = str(self.shard)  # which shard `SAFEVID_BUILD_RAISE_AT` names
        taxonomy = self.config.taxonomy
        self.taxonomy = load_taxonomy(self.config.resolve_path(taxonomy) if taxonomy else None)
        prompts_dir = self.config.prompts_dir
        self.prompts = PromptLibrary(self.config.resolve_path(prompts_dir) if prompts_dir else None)
        # The prompt hashes are taken when the build starts: a template edited mid-build must not be
        # picked up (and re-checking every file on each render costs a stat per prompt).
        self.prompts.env.auto_reload = False
        unknown = sorted(set(self.config.queries.per_style) - set(self.taxonomy.query_style_ids))
        if unknown:
            raise ValueError(
                f"queries.per_style names query styles {unknown} that taxonomy {self.taxonomy.source} "
                f"does not define; its styles: {list(self.taxonomy.query_style_ids)}"
            )

    # --- prompts -------------------------------------------------------------------------------
    def render(self, name: str, **context: Any) -> str:
        return self.prompts.render(name, **context)

    def prompt_sha(self, name: str) -> str:
        """SHA-256 of a template's source and of the macro file every template may import."""
        digest = hashlib.sha256()
        for template in (name, "_macros"):
            source, _, _ = self.prompts.env.loader.get_source(self.prompts.env, f"{template}.jinja")
            digest.update(source.encode())
        return digest.hexdigest()

    def prompt_shas(self) -> dict[str, str]:
        return {name: self.prompt_sha(name) for name in PIPELINE_TEMPLATES}

    # --- models --------------------------------------------------------------------------------
    def backend_config(self, name: str) -> Any:
        from safevid.backends import BackendConfig

        spec = dict(self.config.models[name])
        spec["model"] = resolve_model(spec["model"])
        return BackendConfig.from_dict(spec)

    def _backend_key(self, name: str) -> str:
        return json.dumps(self.config.models[name], sort_keys=True, default=str)

    def backend(self, name: str) -> Any:
        """The backend of a ``models`` entry; entries with identical settings share one instance."""
        from safevid.backends import make_backend

        key = self._backend_key(name)
        if key not in self._backends:
            self._backends[key] = make_backend(self.backend_config(name))
        return self._backends[key]

    def use_backend(self, name: str, backend: Any) -> None:
        """Serve the ``models`` entry ``name`` with an existing backend object (a custom engine)."""
        if name not in self.config.models:
            raise KeyError(f"No model named {name!r} under `models`; declared: {sorted(self.config.models)}")
        self._backends[self._backend_key(name)] = backend

    def generator(self, model_name: str, template: str | None) -> dict[str, Any]:
        """Provenance of one generation step: model, revision and prompt hash (never a secret)."""
        spec = self.config.models[model_name]
        return {
            "model": spec["model"],
            "revision": spec.get("revision") or local_revision(resolve_model(spec["model"])),
            "kind": spec.get("kind", "openai"),
            "prompt_sha": self.prompt_sha(template) if template else None,
        }

    def seed_for(self, stage: str, key: str) -> int:
        """The seed of a sampled request: a function of the build seed, the stage and the record key only."""
        return int(hashlib.sha256(f"{self.config.seed}|{stage}|{key}".encode()).hexdigest()[:8], 16)

    # --- video decoding ------------------------------------------------------------------------
    def decode_pool(self) -> Any:
        """The build's `safevid.video.pool.DecodePool` (``decode_workers`` processes, the sampling's timeout per call),
        started on first use and shared by ingest and describe, so a build pays the workers' start-up once."""
        if self._decode_pool is None:
            from safevid.video.pool import DecodePool

            self._decode_pool = DecodePool(self.config.decode_workers, self.config.video_sampling.timeout_s)
        return self._decode_pool

    def close(self) -> None:
        if self._decode_pool is not None:
            self._decode_pool.close()
            self._decode_pool = None
        for backend in self._backends.values():
            close = getattr(backend, "close", None)  # engines and connection pools have something to release
            if close is not None:
                close()
        self._backends.clear()


def local_revision(model: str) -> str | None:
    """For a local checkpoint folder, a hash of its config and weight file sizes; `None` for served names."""
    folder = Path(model)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes() if path.suffix == ".json" else str(path.stat().st_size).encode())
    return "local-" + digest.hexdigest()[:16]
