"""The SafeVidBench builder, small scale: the pipeline's own stages on tiny models, every requested
subcategory × style, balanced, held out from a training dataset and a list of hashes, loadable, pushable.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from safevid.pipeline.benchmark import build_benchmark, load_benchmark_config
from safevid.taxonomy import load_taxonomy

DEMO = Path(__file__).resolve().parent.parent / "hub" / "datasets" / "safevidbench" / "config_demo.yaml"
SUBCATEGORIES = ["weapons.explosives", "privacy.identification"]
STYLES = ["explicit", "temporal", "benign_contrast"]


def write_taxonomy(path: Path) -> Path:
    """The packaged taxonomy cut to two subcategories, as a user's file (short prompts for tiny models)."""
    data = load_taxonomy().to_dict()
    domains = {s.split(".")[0] for s in SUBCATEGORIES}
    data["domains"] = [
        {**d, "subcategories": [s for s in d["subcategories"] if s["id"] in SUBCATEGORIES]}
        for d in data["domains"]
        if d["id"] in domains
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from datasets import Dataset

    from safevid.testing.videos import make_test_video

    tmp = tmp_path_factory.mktemp("bench")
    videos = [
        make_test_video(
            tmp / "videos" / f"v{i}.mp4",
            duration=1.0 + 0.25 * i,
            fps=8.0 + i,
            width=64,
            height=48,
            pattern="textured" if i % 2 else "index",
        )
        for i in range(5)
    ]
    # Training data to hold out: a dataset with only a video_id column (excluding needs no queries), and a
    # file of hashes.
    train = tmp / "train-set"
    Dataset.from_dict({"video_id": [sha256(videos[0])]}).to_parquet(train / "data" / "train-0.parquet")
    (tmp / "held_out.txt").write_text(f"# training videos\n{sha256(videos[1])}\n", encoding="utf-8")
    config = load_benchmark_config(DEMO, {"output_dir": str(tmp / "safevidbench")})
    config.subcategories, config.styles = SUBCATEGORIES, STYLES
    config.require_full_coverage = True
    config.exclude.datasets = [{"dataset": str(train), "split": "train"}]
    config.exclude.video_id_files = [str(tmp / "held_out.txt")]
    config.pipeline["taxonomy"] = str(write_taxonomy(tmp / "taxonomy.yaml"))
    config.pipeline["inputs"] = [{"folder": str(tmp / "videos")}]
    result = build_benchmark(config)
    excluded = {sha256(videos[0]), sha256(videos[1])}
    return tmp, config, result, excluded


def rows(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return [r for f in sorted((folder / "data").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_every_subcategory_and_style_is_covered_and_balanced(built):
    _tmp, config, result, _ = built
    assert result.missing == []
    assert result.coverage == {sub: dict.fromkeys(STYLES, 1) for sub in SUBCATEGORIES}
    data = rows(Path(config.output_dir))
    cells = sorted((r["subcategory"], r["query_style"]) for r in data)
    assert cells == sorted((s, t) for s in SUBCATEGORIES for t in STYLES)
    assert all(r["prompt"] and r["description"] for r in data)
    assert result.rows == {"harmful": 4, "benign_contrast": 2}
    assert all(r["is_benign_contrast"] == (r["query_style"] == "benign_contrast") for r in data)
    assert all(json.loads(r["sampling"])["num_frames"] == 4 for r in data)


def test_training_videos_are_held_out_by_hash(built):
    _tmp, config, result, excluded = built
    data = rows(Path(config.output_dir))
    assert {r["video_id"] for r in data}.isdisjoint(excluded)
    assert all(
        hashlib.sha256(r["video"]["bytes"]).hexdigest() == r["video_id"] for r in data
    )  # ids are content
    assert result.excluded_videos == 2
    exclusion = result.manifest["benchmark"]["exclusion"]
    assert exclusion["training_video_ids"] == 2
    assert exclusion["overlap_with_training"] == 0
    # Excluded videos were dropped right after ingest: never described.
    from safevid.pipeline.store import RecordStore

    store_file = next((Path(config.output_dir) / ".safevid-build").glob("shard-*.sqlite"))
    with RecordStore(store_file, readonly=True) as store:
        described = {r.key for r in store.iter_stage("describe")}
    assert described
    assert described.isdisjoint(excluded)


def test_loads_with_datasets_in_every_config_and_card_has_counts(built):
    from datasets import load_dataset

    _tmp, config, _result, _ = built
    out = Path(config.output_dir)
    test = load_dataset(str(out), split="test")
    benign = load_dataset(str(out), "benign_contrast", split="test")
    harmful = load_dataset(str(out), "harmful", split="test")
    assert (len(test), len(benign), len(harmful)) == (6, 2, 4)
    assert set(benign["query_style"]) == {"benign_contrast"}
    assert test.features["video"].__class__.__name__ == "Video"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "config_name: benign_contrast" in card
    assert "dtype: video" in card
    assert "weapons.explosives" in card
    assert "Overlap of the" in card
    assert "SafeVid (Wang et al., 2025" in card


def test_short_coverage_is_an_error_naming_the_cells(built):
    _tmp, config, _result, _ = built
    config.videos_per_subcategory = (
        10  # more than the held-out videos can give: stages resume, selection fails
    )
    try:
        with pytest.raises(RuntimeError, match=r"weapons\.explosives×explicit \(\d+/10\)"):
            build_benchmark(config)
    finally:
        config.videos_per_subcategory = 1


def test_bad_configs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'videos_per_subcategory'"):
        load_benchmark_config(DEMO, {"videos_per_subcategor": 2})
    config = load_benchmark_config(DEMO, {"output_dir": str(tmp_path / "x")})
    config.subcategories = ["weapons.explosive"]
    with pytest.raises(ValueError, match=r"did you mean 'weapons\.explosives'"):
        build_benchmark(config)


def test_push_and_load_from_the_hub(built, loopback_hub):
    from datasets import load_dataset

    from safevid.pipeline.benchmark import push_benchmark

    _tmp, config, _result, _ = built
    repo_id = loopback_hub.unique_repo_id("safevidbench")
    pushed = push_benchmark(config.output_dir, repo_id)
    assert "README.md" in pushed.uploaded
    assert not any(p.startswith(".") for p in pushed.uploaded)
    assert len(load_dataset(repo_id, "benign_contrast", split="test")) == 2


def test_the_harness_reads_back_the_frames_the_build_ingested(built, tmp_path):
    """A row's `video_id` (the file's SHA-256) and `sampling` (the build's) name the frame store entry ingest
    wrote, so evaluating with the build's `<work_dir>/frames` decodes nothing."""
    from safevid.evaluation.answers import generate_answers, load_benchmark
    from safevid.evaluation.config import EvalConfig

    from helpers import Recorder

    _tmp, config, _result, _ = built
    run = EvalConfig.from_dict(
        {
            "benchmark": config.output_dir,
            "model": {"kind": "openai", "model": "recorder"},
            "output_dir": str(tmp_path / "run"),
            "frames_dir": str(Path(config.output_dir) / ".safevid-build" / "frames"),
            "decode_workers": 1,
        }
    )
    (tmp_path / "run").mkdir()
    dataset = load_benchmark(run)
    counts = generate_answers(run, dataset, backend=Recorder())
    assert counts["answered"] == 6
    assert (counts["videos_decoded"], counts["videos_from_store"]) == (0, len(set(dataset["video_id"])))


def test_build_bench_command_names_a_bad_config(tmp_path, capsys):
    from safevid.cli import main

    bad = tmp_path / "bench.yaml"
    bad.write_text("subcategoriez: [toy.fire]\n", encoding="utf-8")
    assert main(["build-bench", "--config", str(bad)]) == 2
    out = capsys.readouterr().out
    assert out.startswith("safevid build-bench: error:")
    assert "subcategoriez" in out
