"""Write docs/configuration.md from the config dataclasses themselves, so the reference cannot drift.

python scripts/config_reference.py          # rewrite docs/configuration.md
python scripts/config_reference.py --check  # exit 1 if it is out of date (tests/test_docs.py runs this)
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import typing
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# (section title, "module:Class", what it configures); VideoDPOConfig lists only what safevid adds to TRL's DPOConfig.
SECTIONS = [
    (
        "VideoSampling",
        "safevid.video:VideoSampling",
        "How a video becomes frames: shared by build, training and evaluation, stored with every row.",
    ),
    (
        "BackendConfig",
        "safevid.backends:BackendConfig",
        "One model behind the generation interface (`make_backend(**fields)`, `models:` entries of the build YAML, `judge=` of the metric).",
    ),
    (
        "BuildConfig",
        "safevid.pipeline.config:BuildConfig",
        "The SafeVid build YAML (`safevid build --config`).",
    ),
    ("InputSpec", "safevid.pipeline.config:InputSpec", "One entry of `inputs:` in the build YAML."),
    ("DescribeConfig", "safevid.pipeline.config:DescribeConfig", "`describe:` in the build YAML."),
    ("ClassifyConfig", "safevid.pipeline.config:ClassifyConfig", "`classify:` in the build YAML."),
    ("QueriesConfig", "safevid.pipeline.config:QueriesConfig", "`queries:` in the build YAML."),
    ("ResponsesConfig", "safevid.pipeline.config:ResponsesConfig", "`responses:` in the build YAML."),
    ("GatesConfig", "safevid.pipeline.config:GatesConfig", "`gates:` in the build YAML."),
    ("DedupConfig", "safevid.pipeline.config:DedupConfig", "`gates.dedup:` in the build YAML."),
    (
        "DecontaminationConfig",
        "safevid.pipeline.config:DecontaminationConfig",
        "`gates.decontamination:` in the build YAML.",
    ),
    ("PublishConfig", "safevid.pipeline.config:PublishConfig", "`publish:` in the build YAML."),
    (
        "EngineConfig",
        "safevid.pipeline.config:EngineConfig",
        "`engine:` in the build YAML (see docs/scale.md).",
    ),
    ("SlurmConfig", "safevid.pipeline.config:SlurmConfig", "`engine.slurm:` in the build YAML."),
    ("RayConfig", "safevid.pipeline.config:RayConfig", "`engine.ray:` in the build YAML."),
    (
        "ScriptArguments",
        "safevid.training:ScriptArguments",
        "What safevid adds to TRL's `ScriptArguments` (`dataset_name`, splits, ...) in a recipe YAML.",
    ),
    (
        "VideoDPOConfig",
        "safevid.training:VideoDPOConfig",
        "What safevid adds to TRL's `DPOConfig` in a recipe YAML; every `DPOConfig` and `trl.ModelConfig` field is accepted too.",
    ),
    (
        "BenchmarkConfig",
        "safevid.pipeline.benchmark:BenchmarkConfig",
        "The SafeVidBench build YAML (`hub/datasets/safevidbench/build.py --config`).",
    ),
    (
        "ExcludeConfig",
        "safevid.pipeline.benchmark:ExcludeConfig",
        "`exclude:` in the SafeVidBench YAML: the training data the benchmark must not share videos with.",
    ),
    (
        "EvalConfig",
        "safevid.evaluation.config:EvalConfig",
        "An evaluation run (`safevid eval --config`, or its flags).",
    ),
]


def _load(target: str) -> type:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _own_fields(cls: type) -> list[dataclasses.Field]:
    """The fields `cls` declares itself (for subclasses of TRL configs, only what safevid adds)."""
    inherited = {
        f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for f in dataclasses.fields(base)
    }
    own = getattr(cls, "__annotations__", {})
    return [
        f
        for f in dataclasses.fields(cls)
        if f.name in own and (f.name not in inherited or cls.__module__.startswith("safevid"))
    ]


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return f"`{field.default!r}`"
    if field.default_factory is not dataclasses.MISSING:
        return f"`{field.default_factory()!r}`"
    return "required"


def _type(field: dataclasses.Field, hints: dict) -> str:
    hint = hints.get(field.name, field.type)
    text = hint if isinstance(hint, str) else getattr(hint, "__name__", None) or str(hint)
    return str(text).replace("typing.", "").replace("|", "\\|")


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the config dataclasses by `python scripts/config_reference.py`; a test fails when it is out of",
        "date. Every YAML key is one of these fields: unknown keys are an error everywhere.",
        "",
    ]
    for title, target, what in SECTIONS:
        cls = _load(target)
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # forward references to optional packages: fall back to the annotation text
            hints = {}
        lines += [
            f"## {title}",
            "",
            f"`{target.replace(':', '.')}` — {what}",
            "",
            "| field | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for field in _own_fields(cls):
            meaning = " ".join(str(field.metadata.get("help", "")).split()).replace("|", "\\|")
            lines.append(
                f"| `{field.name}` | {_type(field, hints)} | {_default(field).replace('|', chr(92) + '|')} | {meaning} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
