"""The one configuration loader: every YAML safevid reads refuses duplicate and unknown keys, checks types and
reads the words users write unquoted (``off``, ``on``, ``no``) as they meant them."""

from __future__ import annotations

import textwrap

import pytest

from safevid.backends import BackendConfig
from safevid.config import ConfigError, did_you_mean, load_config, read_yaml
from safevid.evaluation.config import EvalConfig
from safevid.pipeline.benchmark import BenchmarkConfig, load_benchmark_config
from safevid.pipeline.config import BuildConfig, load_build_config

BUILD = """\
models:
  m: {kind: openai, model: served}
inputs: [{folder: videos}]
describe: {model: m}
classify: {model: m}
queries: {model: m}
responses: {chosen_model: m, rejected_model: m, refusal_model: m}
gates: {judge_mode: off}
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_unquoted_off_is_the_word_and_true_false_stay_booleans():
    assert read_yaml("a: off\nb: on\nc: no\nd: yes\ne: true\nf: False\n") == {
        "a": "off", "b": "on", "c": "no", "d": "yes", "e": True, "f": False,
    }  # fmt: skip


def test_build_yaml_reads_judge_mode_off_unquoted(tmp_path):
    config = load_build_config(_write(tmp_path, "build.yaml", BUILD))
    assert config.gates.judge_mode == "off"
    assert config.source_file == str(tmp_path / "build.yaml")


def test_boolean_fields_take_yes_no_on_off_and_refuse_other_words(tmp_path):
    config = load_build_config(
        _write(tmp_path, "build.yaml", BUILD + "publish: {embed_videos: no, gated: on}\n")
    )
    assert config.publish.embed_videos is False
    assert config.publish.gated is True
    path = _write(tmp_path, "bad.yaml", BUILD + "publish: {embed_videos: nope}\n")
    with pytest.raises(
        ConfigError, match=rf"{path}: publish.embed_videos: expected true or false, got 'nope'"
    ):
        load_build_config(path)


@pytest.mark.parametrize(
    ("cls", "text"),
    [
        (BuildConfig, BUILD + "seed: 1\nseed: 2\n"),
        (BenchmarkConfig, "pipeline: {}\nstyles: [explicit]\nstyles: [temporal]\n"),
        (EvalConfig, "model: {model: m}\nthreshold: 3\nthreshold: 4\n"),
    ],
)
def test_duplicate_keys_are_refused_in_every_config(tmp_path, cls, text):
    path = _write(tmp_path, "dup.yaml", text)
    with pytest.raises(ConfigError, match=rf"(?s){path}: not valid YAML: .*found duplicate key"):
        load_config(path, cls)


def test_types_are_checked_and_named_by_dotted_key(tmp_path):
    path = _write(tmp_path, "bench.yaml", "pipeline: {}\nvideos_per_subcategory: two\n")
    with pytest.raises(ConfigError, match=rf"{path}: videos_per_subcategory: expected an integer, got 'two'"):
        load_benchmark_config(path)
    with pytest.raises(ConfigError, match=r"<flags>: threshold: expected a number, got 'high'"):
        EvalConfig.from_dict({"model": {"model": "m"}, "threshold": "high"}, source="<flags>")
    with pytest.raises(ConfigError, match=r"'max_concurency' \(did you mean 'max_concurrency'\?\)"):
        BackendConfig.from_dict({"model": "m", "max_concurency": 8})


def test_overrides_are_dotted_and_none_is_not_given(tmp_path):
    path = _write(tmp_path, "build.yaml", BUILD)
    config = load_build_config(path, {"output_dir": "elsewhere", "work_dir": None, "classify.votes": 3})
    assert (config.output_dir, config.work_dir, config.classify.votes) == ("elsewhere", None, 3)


def test_did_you_mean():
    assert did_you_mean("treshold", ["threshold", "judge"]) == " (did you mean 'threshold'?)"
    assert did_you_mean("zzz", ["threshold"]) == ""
