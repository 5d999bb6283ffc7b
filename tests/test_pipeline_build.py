"""End to end: the demo build on CPU with tiny random-weight models, through transformers and through the
loopback OpenAI-compatible server; `load_dataset` on the output (both configs); a push through the
loopback Hub and `load_dataset("<org>/safevid-350k")` back; two shard workers whose merge equals one
worker; decontamination; a changed config refused.

The tests use the shipped ``config_demo.yaml`` (so it cannot drift from the code) with a user taxonomy
of five subcategories (short prompts keep tiny-model prefill cheap on CPU, and prove a user's taxonomy
file flows through every stage).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from safevid.pipeline import load_build_config, run_build
from safevid.pipeline.manifest import ConfigChangedError
from safevid.taxonomy import load_taxonomy

HUB = Path(__file__).resolve().parent.parent / "hub" / "datasets" / "safevid-350k"
DEMO = HUB / "config_demo.yaml"
KEEP = {
    "violence": ("violence.graphic_violence", "violence.attack_planning"),
    "weapons": ("weapons.firearms", "weapons.explosives"),
    "dangerous_activities": ("dangerous_activities.hazardous_procedures",),
}


def write_mini_taxonomy(path: Path) -> Path:
    """Five subcategories (two with two rules) of the packaged taxonomy, all query styles, as a user file."""
    data = load_taxonomy().to_dict()
    data["name"] = "mini-taxonomy"
    data["domains"] = [
        {**d, "subcategories": [s for s in d["subcategories"] if s["id"] in KEEP[d["id"]]]}
        for d in data["domains"]
        if d["id"] in KEEP
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def demo_config(tmp: Path, **overrides):
    return load_build_config(
        DEMO,
        {
            "output_dir": str(tmp / "safevid-350k"),
            "taxonomy": str(write_mini_taxonomy(tmp / "taxonomy.yaml")),
            "inputs": [{"test_videos": 4}],
            **overrides,
        },
    )


def read_rows(folder: Path, config: str) -> list[dict]:
    """Every row of a published config, read with pyarrow (no `datasets` decoding), sorted by id."""
    import pyarrow.parquet as pq

    rows = [
        r for f in sorted((folder / "data" / config).glob("*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    return sorted(rows, key=lambda r: r["id"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import logging

    tmp = tmp_path_factory.mktemp("demo")
    config = demo_config(tmp)
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    describe_log = logging.getLogger("safevid.pipeline.describe")
    describe_log.addHandler(handler)
    level, describe_log.level = describe_log.level, logging.INFO
    try:
        result = run_build(config)
    finally:
        describe_log.removeHandler(handler)
        describe_log.setLevel(level)
    config.describe_messages = messages  # type: ignore[attr-defined]
    return tmp, config, result


def test_each_video_is_decoded_once_and_describe_reads_the_frames_back(built):
    from safevid.pipeline.store import RecordStore
    from safevid.video.frame_store import FrameStore, frame_key

    _tmp, config, result = built
    with RecordStore(result.store_path, readonly=True) as store:
        videos = [r.key for r in store.iter_stage("video")]
    frames = FrameStore(config.work_path / "frames")
    assert sorted(frames.keys()) == sorted(frame_key(v, config.video_sampling) for v in videos)
    assert config.describe_messages == [
        f"describe: {len(videos)} video(s) read from the frame store, 0 decoded again"
    ]


def test_demo_build_publishes_50_pairs_that_load_in_both_configs(built):
    from datasets import load_dataset

    _tmp, config, result = built
    out = Path(config.output_dir)
    manifest = json.loads((out / "safevid_manifest.json").read_text())
    rows = result.publish.rows["train"]
    assert rows >= 50
    assert manifest["publish"]["rows"] == {"train": rows}

    flat = load_dataset(str(out), split="train")
    pairs = load_dataset(str(out), "conversational", split="train")
    assert len(flat) == len(pairs) == rows
    row, conv = flat[0], pairs[0]
    assert row["video"].metadata.num_frames > 0  # embedded bytes decode to a torchcodec VideoDecoder
    assert len(row["frame_timestamps"]) == 4
    assert row["sampled_fps"] > 0
    assert json.loads(row["sampling"])["num_frames"] == 4
    assert row["subcategory"] in {s for subs in KEEP.values() for s in subs}
    assert row["rule_ids"]
    assert all(r[:3] in {"VIO", "WEA", "DAN"} for r in row["rule_ids"])
    generators = json.loads(row["generators"])
    assert set(generators) == {"describe", "classify", "query", "chosen", "rejected"}
    for stage in ("describe", "classify", "query", "chosen"):
        assert len(generators[stage]["prompt_sha"]) == 64
        assert generators[stage]["revision"].startswith("local-")
    # The target VLM answers the bare query (no prompt template); a needless refusal has one.
    assert (generators["rejected"]["prompt_sha"] is None) == (row["query_style"] != "benign_contrast")
    assert conv["id"] == row["id"]  # both configs are written row by row from the same pass
    assert conv["prompt"][0]["content"] == [
        {"type": "video", "text": None},
        {"type": "text", "text": row["prompt"]},
    ]
    assert conv["chosen"] == [{"role": "assistant", "content": [{"type": "text", "text": row["chosen"]}]}]
    by_id = {r["id"]: r for r in read_rows(out, "default")}
    assert set(by_id) == {r["id"] for r in read_rows(out, "conversational")}
    assert sum(1 for r in by_id.values() if r["query_style"] == "benign_contrast") > 0

    # Per-stage counts add up, every drop has a reason, and the judge's verdicts were recorded.
    for stage, counts in manifest["stages"].items():
        assert counts["in"] == counts["ok"] + sum(counts["dropped"].values()) + counts["errors_total"], stage
    assert manifest["stages"]["gates"]["ok"] == manifest["publish"]["candidates"]
    assert manifest["config"]["gates"]["judge_mode"] == "record"
    assert sum(manifest["judge_record"].values()) == manifest["stages"]["gates"]["ok"]
    assert set(manifest["prompts"]) >= {"describe", "classify", "query", "chosen", "judge_risk_choice"}
    card = (out / "README.md").read_text()
    assert "cc-by-nc-sa-4.0" in card
    assert "extra_gated_prompt" in card
    assert "dtype: video" in card
    assert "| Weapons and explosives | Explosives and incendiary devices (`weapons.explosives`) |" in card
    assert "SafeVid-350K** is a video safety preference dataset" in card  # the hub folder's template
    # What the conversational config needs, and the command that trains it.
    assert "TRL's conversational preference format" in card
    assert "safevid.training.VideoDPOTrainer" in card
    assert "recipes/dpo.py" in card
    assert "--dataset_config conversational" in card


def test_judge_verdicts_are_stored_with_each_pair(built):
    from safevid.pipeline.store import RecordStore

    _, _, result = built
    with RecordStore(result.store_path, readonly=True) as store:
        gates = list(store.iter_stage("gate"))
        pairs = {p.key: p.data["row"] for p in store.iter_stage("pair")}
    assert gates
    for gate in gates:
        verdicts = gate.data["verdicts"]
        harmful = pairs[gate.key]["query_style"] != "benign_contrast"
        assert set(verdicts) == ({"chosen", "rejected"} if harmful else {"chosen"})
        for verdict in verdicts.values():
            assert verdict["verdict"]["label"] in ("safe", "unsafe", "undetermined")
            if verdict["verdict"]["label"] == "undetermined":
                assert verdict["verdict"]["code"] != "ok"
                assert verdict["verdict"]["reason"]


def test_rerun_is_a_no_op_and_a_changed_config_is_refused(built):
    tmp, config, result = built
    before = read_rows(Path(config.output_dir), "default")
    again = run_build(demo_config(tmp))
    assert again.manifest["stages"] == result.manifest["stages"]
    assert read_rows(Path(config.output_dir), "default") == before

    changed = demo_config(tmp, **{"queries.per_style": {"explicit": 2}})
    with pytest.raises(ConfigChangedError, match="another configuration"):
        run_build(changed)
    moved = run_build(demo_config(tmp, **{"queries.per_style": {"explicit": 1}}), new_output=True)
    assert moved.output_dir != Path(config.output_dir)
    assert moved.output_dir.name.startswith("safevid-350k-")
    assert read_rows(Path(config.output_dir), "default") == before  # the first build is untouched
    assert {r["query_style"] for r in read_rows(moved.output_dir, "default")} == {"explicit"}


def test_two_shard_workers_merge_to_the_single_worker_build(built):
    tmp, config, _ = built
    sharded = demo_config(tmp, output_dir=str(tmp / "sharded"))
    from safevid.pipeline.run import ShardCountError

    for shard in range(2):
        worker = run_build(demo_config(tmp, output_dir=str(tmp / "sharded")), shard=shard, num_shards=2)
        assert worker.publish is None
        assert worker.complete
        if shard == 0:
            with pytest.raises(RuntimeError, match="shard 1: no store"):
                run_build(
                    demo_config(tmp, output_dir=str(tmp / "sharded")), num_shards=2, stages=("publish",)
                )
    with pytest.raises(ShardCountError, match="in 2 shards"):
        run_build(demo_config(tmp, output_dir=str(tmp / "sharded")), num_shards=3, stages=("publish",))
    merged = run_build(sharded, num_shards=2, stages=("publish",))
    videos_per_shard = [m["stages"]["ingest"]["ok"] for m in (
        json.loads((tmp / "sharded" / ".safevid-build" / f"shard-0000{i}-of-00002.manifest.json").read_text())
        for i in range(2))]  # fmt: skip
    # Source keys are paths relative to the input folder (test_00.mp4 ... test_03.mp4), so the split is fixed
    # by the configuration, not by where the test's temporary folder is.
    assert videos_per_shard == [2, 2]
    for name in ("default", "conversational"):
        assert read_rows(merged.output_dir, name) == read_rows(Path(config.output_dir), name)


def test_a_second_run_on_the_same_shard_or_output_fails_at_once_naming_the_holder(built, tmp_path):
    import os
    import shutil

    from safevid.pipeline.lock import BuildLock, BuildLockedError
    from safevid.pipeline.publish import PUBLISH_LOCK_NAME

    tmp, config, result = built
    copy = tmp_path / "safevid-350k"
    shutil.copytree(config.output_dir, copy)
    store = copy / ".safevid-build" / "shard-00000-of-00001.sqlite"
    # Another run (here: this process, through another open file) holds the shard's lock.
    holder = rf"in use by another run \(\{{\"pid\": {os.getpid()}, \"host\""
    with BuildLock(store.with_suffix(".lock"), "shard 0"), pytest.raises(BuildLockedError, match=holder):
        run_build(demo_config(tmp, output_dir=str(copy)))
    output_locked = f"output folder {copy} is in use"
    with BuildLock(copy / PUBLISH_LOCK_NAME, "output"), pytest.raises(BuildLockedError, match=output_locked):
        run_build(demo_config(tmp, output_dir=str(copy)), stages=("publish",))
    # Released: the publish runs, into a staging folder of its own (a killed publish's leftover is removed).
    (copy / ".publish-staging-killed").mkdir()
    again = run_build(demo_config(tmp, output_dir=str(copy)), stages=("publish",))
    assert again.publish.rows == result.publish.rows
    assert sorted(p.name for p in copy.iterdir()) == [
        ".safevid-build",
        PUBLISH_LOCK_NAME,
        "README.md",
        "data",
        "safevid_manifest.json",
    ]


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_store_is_named_with_how_to_recover(built, tmp_path, damage):
    import shutil

    from safevid.pipeline.store import DamagedStoreError

    tmp, config, _ = built
    copy = tmp_path / "safevid-350k"
    shutil.copytree(config.output_dir, copy)
    store = copy / ".safevid-build" / "shard-00000-of-00001.sqlite"
    if damage == "truncated":
        with store.open("r+b") as f:
            f.truncate(store.stat().st_size // 2)
    else:
        store.write_bytes(b"not a database" * 100)
    with pytest.raises(DamagedStoreError, match=rf"record store {store} is damaged .*Delete it.*rerun"):
        run_build(demo_config(tmp, output_dir=str(copy)))


def test_decontamination_drops_shared_videos_and_near_duplicate_queries(built):
    from datasets import Dataset

    tmp, config, _ = built
    rows = read_rows(Path(config.output_dir), "default")
    video_id = rows[0]["video_id"]
    query_row = next(r for r in rows if r["video_id"] != video_id)
    bench = tmp / "bench"
    Dataset.from_dict(
        {
            "video_id": [video_id, "f" * 64],
            "prompt": ["an unrelated benchmark question", query_row["prompt"] + " ?"],
        }
    ).to_parquet(str(bench / "test.parquet"))
    clean = run_build(
        demo_config(
            tmp,
            output_dir=str(tmp / "clean"),
            **{"gates.judge_mode": "off", "gates.decontaminate": {"dataset": str(bench), "split": "test"}},
        )
    )
    dropped = clean.publish.dropped
    assert dropped["contaminated_video"] == sum(r["video_id"] == video_id for r in rows)
    assert dropped["contaminated_query"] >= 1
    kept = read_rows(clean.output_dir, "default")
    assert all(r["video_id"] != video_id for r in kept)
    assert query_row["id"] not in {r["id"] for r in kept}


def test_push_through_the_loopback_hub_and_load_back(built, loopback_hub):
    from datasets import load_dataset

    from safevid.pipeline.publish import push_to_hub

    _, config, _ = built
    out = Path(config.output_dir)
    repo_id = loopback_hub.unique_repo_id("safevid-350k")
    first = push_to_hub(out, repo_id, files_per_commit=2)
    data_files = sorted(str(p.relative_to(out)) for p in (out / "data").rglob("*.parquet"))
    assert sorted(first.uploaded) == sorted([*data_files, "README.md", "safevid_manifest.json"])
    assert first.commits == -(-len(data_files) // 2) + 1  # batches of two, then the card
    remote = loopback_hub.files(repo_id, "dataset")
    assert not any(p.startswith(".safevid-build") for p in remote)

    again = push_to_hub(out, repo_id, files_per_commit=2)  # a resumed push uploads nothing twice
    assert again.uploaded == []
    assert again.commits == 0
    assert len(again.skipped) == len(first.uploaded)

    for name in ("default", "conversational"):
        loaded = load_dataset(repo_id, name, split="train")
        local = read_rows(out, name)
        assert sorted(loaded["id"]) == [r["id"] for r in local]
        assert len(loaded) == len(local)
    assert load_dataset(repo_id, split="train")[0]["video"].metadata.num_frames > 0


def test_build_through_the_loopback_openai_server(tmp_path):
    from datasets import load_dataset

    from safevid.backends.server import LoopbackServer
    from safevid.testing.tiny_models import build_tiny_model

    with LoopbackServer(build_tiny_model("qwen2_vl"), model_name="tiny-qwen2-vl") as server:
        endpoint = {"kind": "openai", "model": "tiny-qwen2-vl", "base_url": server.base_url,
                    "structured_outputs": "vllm", "max_concurrency": 4}  # fmt: skip
        config = demo_config(
            tmp_path,
            models={"describer": endpoint, "target": endpoint, "llm": endpoint},
            inputs=[{"test_videos": 4}],
        )
        result = run_build(config)
    out = Path(config.output_dir)
    assert result.publish.rows["train"] >= 50
    for name in ("default", "conversational"):
        assert len(load_dataset(str(out), name, split="train")) == result.publish.rows["train"]
    generators = json.loads(read_rows(out, "default")[0]["generators"])
    assert generators["describe"]["kind"] == "openai"
    assert generators["describe"]["model"] == "tiny-qwen2-vl"
