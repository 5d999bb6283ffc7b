"""The build manifest: configuration, models and revisions, prompt hashes, per-stage counts.

Each shard store keeps the fingerprint and fingerprint payload of the config it was built with; a
rerun under a changed config is refused with the list of changed keys (or sent to a new output folder
with ``--new-output``), so records of two configurations are never mixed. The publish step writes the
merged manifest as ``safevid_manifest.json`` next to the data. No secret is ever written, to the
manifest or to the store's copy of the fingerprint payload: backend configs carry no API keys (they are
read from the environment), any key that looks like a credential (``extra_body.api_key``, a ``token``,
a ``password``...) has its value redacted, and so has the ``user:password@`` of any URL (a ``base_url``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from safevid.pipeline.config import diff_keys
from safevid.pipeline.context import BuildContext
from safevid.pipeline.stages import WORKER_STAGES
from safevid.pipeline.store import DROPPED, ERROR, OK, RecordStore

_SECRET = re.compile(r"key|token|secret|passw|credential|authorization|cookie", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?<=://)[^/?#@\s]+@")


class ConfigChangedError(RuntimeError):
    """A store or output folder built under another configuration."""


def check_fingerprint(store: RecordStore, fingerprint: str, payload: dict[str, Any]) -> None:
    """Record the fingerprint in a new store; refuse a store built under another one."""
    existing = store.get_meta("fingerprint")
    if existing is None:
        store.set_meta("fingerprint", fingerprint)
        store.set_meta("fingerprint_payload", json.dumps(redact(payload), sort_keys=True, default=str))
        return
    if existing != fingerprint:
        old = json.loads(store.get_meta("fingerprint_payload") or "{}")
        changed = diff_keys(old, json.loads(json.dumps(redact(payload), default=str)))
        raise ConfigChangedError(
            f"The build state in {store.path.parent} was made with another configuration "
            f"(changed: {', '.join(changed) or 'unknown'}). Mixing them would give an inconsistent dataset: "
            "build into a fresh folder with --output-dir DIR or --new-output, or restore the old config."
        )


def redact(value: Any) -> Any:
    """``value`` with the values of credential-like keys and the ``user:password@`` of URLs redacted."""
    if isinstance(value, dict):
        return {k: "<redacted>" if _SECRET.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _URL_USERINFO.sub("<redacted>@", value)
    return value


def stage_counts(stores: Iterable[RecordStore]) -> dict[str, dict[str, Any]]:
    """Per stage: records in, ok, dropped by reason, retryable errors by reason (summed over stores)."""
    totals: dict[str, dict[str, Any]] = {}
    for store in stores:
        counts = store.counts()
        for stage in WORKER_STAGES:
            entry = totals.setdefault(
                stage.name, {"in": 0, "ok": 0, "dropped": {}, "errors": {}, "errors_total": 0}
            )
            for status, reasons in counts.get(stage.record_kind, {}).items():
                for reason, n in reasons.items():
                    entry["in"] += n
                    if status == OK:
                        entry["ok"] += n
                    elif status == DROPPED:
                        entry["dropped"][reason] = entry["dropped"].get(reason, 0) + n
                    elif status == ERROR:
                        entry["errors"][reason] = entry["errors"].get(reason, 0) + n
                        entry["errors_total"] += n
    for entry in totals.values():
        entry["dropped"] = dict(sorted(entry["dropped"].items()))
    return totals


def judge_record_stats(stores: Iterable[RecordStore]) -> dict[str, int]:
    """In ``record`` judge mode: how many pairs each check would have dropped."""
    out: dict[str, int] = {}
    for store in stores:
        for reason, n in store.conn.execute(
            "SELECT json_extract(data, '$.would_drop'), COUNT(*) FROM records "
            "WHERE stage = 'gate' AND status = 'ok' GROUP BY 1"
        ):
            out[reason or "pass"] = out.get(reason or "pass", 0) + n
    return dict(sorted(out.items()))


def build_manifest(
    ctx: BuildContext, fingerprint: str, stores: list[RecordStore], shards: int
) -> dict[str, Any]:
    """The build manifest: fingerprint, redacted config, taxonomy, prompts, models and per-stage counts."""
    config = ctx.config
    return {
        "format": 1,
        "fingerprint": fingerprint,
        "config": redact(config.to_dict()),
        "taxonomy": {"name": ctx.taxonomy.name, "sha": ctx.taxonomy.sha, "source": ctx.taxonomy.source},
        "models": {
            name: {k: v for k, v in ctx.generator(name, None).items() if k != "prompt_sha"}
            for name in config.models
        },
        "prompts": ctx.prompt_shas(),
        "sampling": config.video_sampling.to_dict(),
        "num_shards": shards,
        "stages": stage_counts(stores),
        "judge_record": judge_record_stats(stores) if config.gates.judge_mode == "record" else None,
    }
