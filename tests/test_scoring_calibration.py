from __future__ import annotations

import json
import math

import pytest

from safevid.scoring.calibration import (
    agreement,
    choose_threshold,
    cohen_kappa,
    load_labelled_examples,
    self_consistency,
)
from safevid.scoring.refusal import detect_refusal
from safevid.scoring.verdict import Verdict
from safevid.taxonomy import load_taxonomy


def test_cohen_kappa_hand_computed():
    # 2x2 table (human x judge): uu=20, us=5, su=10, ss=15; n=50.
    # p_o = 35/50 = 0.7; p_e = (25*30 + 25*20) / 2500 = 0.5; kappa = 0.2 / 0.5 = 0.4.
    human = ["unsafe"] * 25 + ["safe"] * 25
    judge = ["unsafe"] * 20 + ["safe"] * 5 + ["unsafe"] * 10 + ["safe"] * 15
    assert cohen_kappa(human, judge) == pytest.approx(0.4)
    assert cohen_kappa(judge, human) == pytest.approx(0.4)  # symmetric


def test_cohen_kappa_edges():
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))  # p_e = 1: undefined
    with pytest.raises(ValueError, match="equal length"):
        cohen_kappa(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        cohen_kappa([], [])


def test_choose_threshold_hand_computed():
    human = ["safe", "safe", "safe", "unsafe", "unsafe", "safe", "unsafe", "unsafe"]
    scores = [1.0, 1.4, 2.0, 2.6, 3.0, 3.1, 4.2, 4.9]
    # Best cut: between 2.0 and 2.6 -> only 3.1 is misjudged: accuracy 7/8; kappa (0.875-0.5)/0.5 = 0.75.
    choice = choose_threshold(human, scores)
    assert choice.threshold == pytest.approx(2.3)
    assert choice.accuracy == pytest.approx(7 / 8)
    assert choice.kappa == pytest.approx(0.75)
    assert (choice.n, choice.n_excluded) == (8, 0)


def test_choose_threshold_ties_and_exclusions():
    # Cuts at 2.0 and 4.25 both reach accuracy 3/4 and kappa 0.5: the one nearer the default wins.
    human, scores = ["safe", "unsafe", "safe", "unsafe"], [1.0, 3.0, 3.5, 5.0]
    assert choose_threshold(human, scores).threshold == pytest.approx(2.0)
    assert choose_threshold(human, scores, default=4.0).threshold == pytest.approx(4.25)
    # Accuracy tie (0.9 at 1.75 and 3.5) broken by kappa (0.737 vs 0.615).
    human = ["safe"] * 8 + ["unsafe"] * 2
    scores = [1.0] * 7 + [3.0, 2.5, 4.0]
    for objective in ("accuracy", "kappa"):
        choice = choose_threshold(human, scores, objective=objective)
        assert choice.threshold == pytest.approx(1.75)
        assert choice.kappa == pytest.approx(0.28 / 0.38)
    # Undetermined items (no score) are left out and counted.
    choice = choose_threshold(["safe", "unsafe", "unsafe"], [1.0, None, 4.0])
    assert (choice.n, choice.n_excluded, choice.accuracy) == (2, 1, 1.0)
    with pytest.raises(ValueError, match="'safe' or 'unsafe'"):
        choose_threshold(["ok"], [1.0])
    with pytest.raises(ValueError, match="at least one item with a judge score"):
        choose_threshold(["safe"], [None])


def test_agreement_with_human_labels():
    human = ["unsafe", "unsafe", "safe", "safe", "unsafe"]
    judge = [
        "unsafe",
        "safe",
        "safe",
        Verdict.judge_error("timeout"),
        Verdict("unsafe", 4.0, "ok", "", "final_line"),
    ]
    report = agreement(human, judge)
    assert (report.n, report.n_undetermined) == (4, 1)
    assert report.accuracy == pytest.approx(0.75)
    assert report.kappa == pytest.approx(0.5)  # p_o .75, p_e (3*2 + 1*2)/16 = .5
    assert report.confusion == {"safe/safe": 1, "unsafe/safe": 1, "unsafe/unsafe": 2}
    assert report.coverage == pytest.approx(0.8)


def test_self_consistency():
    a = [
        Verdict("safe", 1.0, "ok", "", "logprobs"),
        "unsafe",
        "undetermined",
        Verdict("safe", 2.0, "ok", "", "logprobs"),
    ]
    b = [
        Verdict("safe", 1.5, "ok", "", "logprobs"),
        "safe",
        "undetermined",
        Verdict("unsafe", 3.0, "ok", "", "logprobs"),
    ]
    report = self_consistency(a, b)
    assert (report.n, report.disagreements, report.disagreement_rate) == (4, 2, 0.5)
    assert report.kappa == pytest.approx(0.2)  # p_o .5, p_e (4+1+1)/16 = .375
    assert report.mean_abs_score_diff == pytest.approx(0.75)  # |1-1.5| and |2-3|
    with pytest.raises(ValueError, match="equal length"):
        self_consistency(["safe"], [])
    with pytest.raises(ValueError, match="safe, unsafe or undetermined"):
        self_consistency(["fine"], ["safe"])


def test_packaged_labelled_examples_are_valid_and_marked_illustrative():
    from importlib import resources

    first = (
        resources.files("safevid.scoring")
        .joinpath("data/labelled_examples.jsonl")
        .read_text()
        .splitlines()[0]
    )
    assert json.loads(first)["_meta"]["illustrative"] is True
    examples = load_labelled_examples()
    taxonomy = load_taxonomy()
    assert len(examples) >= 25
    assert len({e.id for e in examples}) == len(examples)
    assert {e.human_label for e in examples} == {"safe", "unsafe"}
    assert "benign_contrast" in {e.query_style for e in examples}
    for e in examples:
        taxonomy.subcategory(e.subcategory)
        taxonomy.query_style(e.query_style)
    # Cross-check the pattern tier: every response it calls a full refusal is labelled safe.
    assert all(e.human_label == "safe" for e in examples if detect_refusal(e.response).is_full_refusal)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"id": "x"}', "missing fields"),
    ],
)
def test_labelled_examples_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"_meta": {"note": "mine"}}\n' + line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        load_labelled_examples(path)
    assert f"{path}:2" in str(info.value)


def test_labelled_examples_bad_label(tmp_path):
    row = {
        "id": "a",
        "subcategory": "weapons.explosives",
        "query_style": "explicit",
        "query": "q",
        "video_description": "d",
        "response": "r",
        "human_label": "fine",
    }
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match="human_label must be 'safe' or 'unsafe'"):
        load_labelled_examples(path)
    row["human_label"] = "unsafe"
    path.write_text(json.dumps(row) + "\n")
    assert load_labelled_examples(path)[0].human_label == "unsafe"
