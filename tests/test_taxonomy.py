from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from safevid.taxonomy import Taxonomy, TaxonomyError, load_taxonomy

REQUIRED_STYLES = {
    "explicit",
    "implicit",
    "jailbreak_roleplay",
    "jailbreak_hypothetical",
    "jailbreak_continuation",
    "temporal",
    "benign_contrast",
}


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


@pytest.fixture
def data(taxonomy) -> dict:
    return copy.deepcopy(taxonomy.to_dict())


def _write(tmp_path: Path, data: dict, name: str = "tax.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_packaged_taxonomy_covers_the_required_ground(taxonomy):
    assert taxonomy.version == 1
    assert len(taxonomy.domains) >= 6
    assert len(taxonomy.subcategories) >= 25
    assert set(taxonomy.query_style_ids) == REQUIRED_STYLES
    assert [s.id for s in taxonomy.query_styles if not s.harmful] == ["benign_contrast"]
    domains = {d.id for d in taxonomy.domains}
    for general in (
        "violence",
        "weapons",
        "self_harm",
        "sexual_content",
        "hate_harassment",
        "illegal_activity",
        "privacy",
        "misinformation",
        "dangerous_activities",
        "drugs",
        "cybercrime",
        "child_safety",
    ):
        assert general in domains
    video_specific = {s.id for s in taxonomy.subcategories if s.video_specific}
    for vid in (
        "dangerous_activities.hazardous_procedures",
        "dangerous_activities.imitable_stunts",
        "privacy.identification",
        "violence.escalating_incidents",
        "misinformation.deepfakes",
    ):
        assert vid in video_specific
    for sub in taxonomy.subcategories:
        assert sub.id.startswith(sub.domain + ".")
        assert sub.rules, sub.id
        for rule in sub.rules:
            assert re.fullmatch(r"[A-Z]{2,6}-\d+", rule.id)
            assert rule.unsafe_if
            assert rule.safe_response
            assert rule.example_intents
            assert "\n" not in rule.unsafe_if  # folded YAML reads as one line in prompts


def test_lookups(taxonomy):
    sub = taxonomy.subcategory("violence.graphic_violence")
    assert sub.name == "Graphic violence"
    assert [r.id for r in taxonomy.rules_for("violence.graphic_violence")] == ["VIO-1", "VIO-2"]
    assert taxonomy.domain_of("weapons.explosives").id == "weapons"
    assert taxonomy.rule("WEA-2").unsafe_if.startswith("The response names ingredients")
    assert taxonomy.query_style("temporal").harmful is True


def test_unknown_subcategory_suggests_close_match(taxonomy):
    with pytest.raises(KeyError, match=r"did you mean 'violence\.graphic_violence'"):
        taxonomy.subcategory("violence.graphic_violnce")
    with pytest.raises(KeyError, match="query style 'jailbreak'"):
        taxonomy.query_style("jailbreak")


def test_sha_is_stable_and_content_sensitive(taxonomy, data, tmp_path):
    assert re.fullmatch(r"[0-9a-f]{64}", taxonomy.sha)
    # Same content through another file (different formatting and key order): same hash.
    reordered = dict(reversed(list(data.items())))
    same = load_taxonomy(_write(tmp_path, reordered))
    assert same.sha == taxonomy.sha
    assert same.source.endswith("tax.yaml")
    data["domains"][0]["subcategories"][0]["rules"][0]["unsafe_if"] += " Also unsafe if it rhymes."
    assert load_taxonomy(_write(tmp_path, data, "changed.yaml")).sha != taxonomy.sha


def test_user_file_and_passthrough(taxonomy, data, tmp_path):
    data["domains"] = data["domains"][:1]
    mine = load_taxonomy(_write(tmp_path, data))
    assert [d.id for d in mine.domains] == ["violence"]
    assert load_taxonomy(mine) is mine
    assert Taxonomy.from_dict(taxonomy.to_dict()).sha == taxonomy.sha


def _error(tmp_path, data) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy(path)
    message = str(info.value)
    assert str(path) in message  # the file is named
    return message


def test_unknown_key_is_named_with_location(data, tmp_path):
    data["domains"][1]["subcategories"][0]["rules"][0]["unsafe_when"] = "x"
    message = _error(tmp_path, data)
    assert (
        "domains[1] (id 'weapons').subcategories[0] (id 'weapons.firearms').rules[0] (id 'WEA-1')" in message
    )
    assert "unknown key 'unsafe_when'" in message
    assert "did you mean 'unsafe_if'" in message


def test_duplicate_ids(data, tmp_path):
    data["domains"][0]["subcategories"][1]["rules"][0]["id"] = "VIO-1"
    data["domains"][1]["subcategories"][1]["id"] = "weapons.firearms"
    message = _error(tmp_path, data)
    assert "duplicate rule id 'VIO-1'" in message
    assert "duplicate subcategory id 'weapons.firearms'" in message


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("version: 1\nname: a\nname: b\n")
    with pytest.raises(TaxonomyError, match=r"(?s)dup\.yaml.*duplicate key 'name'"):
        load_taxonomy(path)


def test_missing_rules_and_empty_fields(data, tmp_path):
    sub = data["domains"][2]["subcategories"][0]
    sub["rules"] = []
    data["domains"][0]["subcategories"][0]["rules"][1]["safe_response"] = "  "
    data["domains"][0]["subcategories"][0]["rules"][1]["example_intents"] = []
    del data["domains"][0]["subcategories"][2]["severity"]
    message = _error(tmp_path, data)
    assert f"subcategories[0] (id '{sub['id']}').rules: must be a non-empty list" in message
    assert "rules[1] (id 'VIO-2').safe_response: must be a non-empty string" in message
    assert "rules[1] (id 'VIO-2').example_intents: must be a non-empty list" in message
    assert "missing required key 'severity'" in message


def test_bad_version_and_references(data, tmp_path):
    data["version"] = 2
    data["domains"][0]["subcategories"][0]["severity"] = "extreme"
    data["domains"][0]["subcategories"][1]["id"] = "weapons.misplaced"
    data["query_styles"][0]["harmful"] = "yes"
    message = _error(tmp_path, data)
    assert "version: unsupported version 2" in message
    assert "'extreme' is not a declared severity level" in message
    assert "'weapons.misplaced' must start with its domain id 'violence.'" in message
    assert "harmful: must be true or false" in message


@pytest.mark.parametrize("bad", ["version: true\n", "- a\n- b\n", "version: [1\n"])
def test_malformed_files(tmp_path, bad):
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(TaxonomyError, match=r"bad\.yaml"):
        load_taxonomy(path)
