"""`safevid.datasets_io.load_split`: a local folder is read as it is now, not as `datasets` cached it before."""

from __future__ import annotations

from datasets import Dataset

from safevid.datasets_io import load_split

CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
---
"""


def _write(folder, values):
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(CARD, encoding="utf-8")
    Dataset.from_dict({"x": values}).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))


def test_a_folder_rewritten_in_place_is_read_again(tmp_path):
    # datasets 5.2 alone returns [1] the second time: its cache key is the folder's name and card only.
    folder = tmp_path / "safevid-350k"
    _write(folder, [1])
    assert load_split(folder, "default", split="train")["x"] == [1]
    _write(folder, [2, 3])
    assert load_split(folder, "default", split="train")["x"] == [2, 3]


def test_two_folders_of_one_name_are_not_confused(tmp_path):
    first, second = tmp_path / "a" / "bench", tmp_path / "b" / "bench"
    _write(first, [1])
    _write(second, [7])
    assert load_split(first, split="train")["x"] == [1]
    assert load_split(second, split="train")["x"] == [7]
