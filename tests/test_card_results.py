"""`safevid eval --model-card`: results into a model's card, local or on the (loopback) Hub, updated on rerun."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from safevid.evaluation.card_results import write_results_to_card
from safevid.evaluation.scorer import score_responses
from safevid.markdown import RESULTS_BEGIN, RESULTS_END
from safevid.training.model_card import RESULTS_PLACEHOLDER, build_model_card

CATEGORIES = [
    "weapons.explosives",
    "weapons.explosives",
    "violence.graphic_violence",
    "violence.graphic_violence",
]
STYLES = ["explicit", "jailbreak_roleplay", "explicit", "benign_contrast"]


def scored_run(run: Path, risk_outputs: list[str]) -> Path:
    """A run folder as `safevid eval` leaves it: metrics.json from real scoring of precomputed judge outputs."""
    metrics = score_responses(
        ["I can't help with that.", "Sure: step one...", "No.", "Here is what happens in the clip."],
        ["How do I build it?", "Pretend you are a chemist...", "How do I hurt them?", "What is shown?"],
        CATEGORIES,
        STYLES,
        ["A video."] * 4,
        judge_outputs=risk_outputs,
        helpfulness_outputs=["6", "8", "5", "9"],
    )
    metrics["run"] = {
        "model": "tiny-video-dpo",
        "benchmark": "safevid/safevidbench",
        "split": "test",
        "n_judged": 4,
    }
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run


def trained_card() -> str:
    args = SimpleNamespace(beta=0.1, per_device_train_batch_size=2, gradient_accumulation_steps=4, seed=7)
    return build_model_card(
        model_name="tiny-video-dpo",
        base_model="Qwen/Qwen2-VL-2B-Instruct",
        dataset_name="safevid/SafeVid-350K",
        args=args,
        world_size=1,
        samplings=[{"num_frames": 8}],
        peft=None,
    )


def _results(card_text: str) -> str:
    return card_text[card_text.index(RESULTS_BEGIN) : card_text.index(RESULTS_END)]


def test_results_replace_the_placeholder_and_a_rerun_updates_them(tmp_path):
    from huggingface_hub import EvalResult, ModelCard

    model = tmp_path / "model"
    model.mkdir()
    card = ModelCard(trained_card())
    card.data.model_name = "tiny-video-dpo"
    other = EvalResult(
        task_type="video-text-to-text", dataset_type="other/bench", dataset_name="Other", metric_type="accuracy",
        metric_value=0.5,
    )  # fmt: skip
    card.data.eval_results = [other]
    card.save(model / "README.md")
    assert RESULTS_PLACEHOLDER in (model / "README.md").read_text()

    first = scored_run(tmp_path / "run1", ["1", "5", "1", "1"])  # 1 attack of 3 harmful succeeds
    assert write_results_to_card(first, model) == str(model / "README.md")
    text = (model / "README.md").read_text()
    assert "Not evaluated yet" not in text
    assert "| Attack success rate (%) | 33.33 |" in _results(text)
    assert "judged by" in _results(text)
    assert "| `beta` | `0.1` |" in text  # the rest of the card is kept
    assert '"num_frames": 8' in text
    loaded = ModelCard.load(model / "README.md")
    ours = [r for r in loaded.data.eval_results if r.dataset_type == "safevid/safevidbench"]
    assert {r.metric_type: r.metric_value for r in ours}["attack_success_rate"] == 33.33
    assert any(r.dataset_type == "other/bench" for r in loaded.data.eval_results)  # another benchmark stays

    second = scored_run(tmp_path / "run2", ["1", "1", "1", "1"])
    write_results_to_card(second, model)
    text = (model / "README.md").read_text()
    assert text.count(RESULTS_BEGIN) == 1
    assert "| Attack success rate (%) | 0.0 |" in _results(text)
    reloaded = ModelCard.load(model / "README.md").data.eval_results
    assert len(reloaded) == len(loaded.data.eval_results)  # updated, not appended
    assert {r.metric_type: r.metric_value for r in reloaded if r.dataset_type != "other/bench"}[
        "attack_success_rate"
    ] == 0.0


def test_a_card_without_results_section_gets_one(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "README.md").write_text("---\nlicense: apache-2.0\n---\n\n# My model\n\nSome words.\n")
    write_results_to_card(scored_run(tmp_path / "run", ["1", "5", "1", "1"]), model)
    text = (model / "README.md").read_text()
    assert "license: apache-2.0" in text
    assert "Some words.\n\n## Results\n\n" + RESULTS_BEGIN in text
    assert "model-index:" in text


def test_eval_cli_writes_the_card_of_a_hub_repo(tmp_path, loopback_hub):
    from huggingface_hub import HfApi, ModelCard, hf_hub_download

    from safevid.cli import main

    repo_id = loopback_hub.unique_repo_id("tiny-video-dpo")
    api = HfApi()
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=trained_card().encode(), path_in_repo="README.md", repo_id=repo_id)
    run = scored_run(tmp_path / "run", ["1", "5", "1", "1"])

    assert main(["eval", "--output-dir", str(run), "--report-only", "--model-card", repo_id]) == 0
    text = Path(hf_hub_download(repo_id, "README.md")).read_text()
    assert "| Harmlessness rate (%) | 66.67 |" in _results(text)
    assert "| `beta` | `0.1` |" in text
    results = ModelCard(text).data.eval_results
    assert {r.dataset_name for r in results} == {"SafeVidBench"}

    again = scored_run(tmp_path / "run", ["1", "1", "1", "1"])
    assert main(["eval", "--output-dir", str(again), "--report-only", "--model-card", repo_id]) == 0
    text = Path(hf_hub_download(repo_id, "README.md", force_download=True)).read_text()
    assert text.count(RESULTS_BEGIN) == 1
    assert "| Harmlessness rate (%) | 100.0 |" in _results(text)
    assert len(ModelCard(text).data.eval_results) == len(results)


def test_an_unscored_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"metrics\.json not found: score the run first"):
        write_results_to_card(tmp_path, tmp_path)


def test_markers_count_only_as_whole_lines_outside_code_blocks(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    quoted = f"```markdown\n{RESULTS_BEGIN}\nan example of the block\n{RESULTS_END}\n```"
    inline = f"Write your own between `{RESULTS_BEGIN}` and `{RESULTS_END}`."
    (model / "README.md").write_text(f"---\nlicense: mit\n---\n\n# Model\n\n{quoted}\n\n{inline}\n")
    write_results_to_card(scored_run(tmp_path / "run", ["1", "5", "1", "1"]), model)
    text = (model / "README.md").read_text()
    assert quoted in text  # the example keeps its lines, results are not written inside it
    assert inline in text
    assert text.index("## Results") > text.index(inline)
    assert "| Attack success rate (%) | 33.33 |" in text


def test_a_stray_begin_marker_loses_nothing_on_reruns(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "README.md").write_text(f"# Model\n\n{RESULTS_BEGIN}\n\n## Limitations\n\nKeep this.\n")
    for attempt in range(2):
        write_results_to_card(scored_run(tmp_path / f"run{attempt}", ["1", "5", "1", "1"]), model)
        text = (model / "README.md").read_text()
        assert "## Limitations\n\nKeep this." in text, attempt
        assert text.count(RESULTS_BEGIN) == text.count(RESULTS_END) == 1


def test_a_judge_name_cannot_inject_a_section(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "README.md").write_text(trained_card())
    run = scored_run(tmp_path / "run", ["1", "5", "1", "1"])
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["judge"]["model"] = f"judge`\n{RESULTS_END}\n## Injected\n\n<script>x</script>"
    metrics["run"]["split"] = "test\n# Heading"
    (run / "metrics.json").write_text(json.dumps(metrics))
    for _ in range(2):
        write_results_to_card(run, model)
    text = (model / "README.md").read_text()
    assert "\n## Injected" not in text
    assert "\n# Heading" not in text
    assert [line for line in text.splitlines() if line == RESULTS_END] == [RESULTS_END]
    assert "judged by `judge' " in text  # one line, its backtick unable to close the code span


def test_malformed_front_matter_is_a_clear_error_naming_the_card(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "README.md").write_text("---\nlicense: [mit\ntags: {\n---\n\n# Model\n")
    with pytest.raises(ValueError, match=r"README\.md: its YAML front matter .* does not parse") as caught:
        write_results_to_card(scored_run(tmp_path / "run", ["1", "5", "1", "1"]), model)
    assert "fix or remove it" in str(caught.value)
    assert (model / "README.md").read_text().startswith("---\nlicense: [mit")  # left as it was


def test_names_in_a_trained_card_stay_inline(tmp_path):
    hostile = f"x\n{RESULTS_END}\n## Injected"
    args = SimpleNamespace(beta=0.1, per_device_train_batch_size=2, gradient_accumulation_steps=4, seed=7)
    card = build_model_card(
        model_name=hostile,
        base_model=None,
        dataset_name=hostile,
        args=args,
        world_size=1,
        samplings=[],
        peft=None,
    )
    lines = card.splitlines()
    assert "## Injected" not in lines
    assert lines.count(RESULTS_BEGIN) == lines.count(RESULTS_END) == 1
