"""Splits: stratified and seeded draws, split-folder layouts, class maps (data/splits.py, data/class_map.py)."""

from collections import Counter

import pytest

from helpers.images import split_layout
from imgexp.data import ImageDataModule
from imgexp.data.class_map import map_labels
from imgexp.data.splits import Sample, split_counts, stratified_split
from imgexp.errors import ImgexpError


def test_split_counts_fill_train_first():
    assert split_counts(1, (0.7, 0.15, 0.15)) == [1, 0, 0]
    assert split_counts(2, (0.7, 0.15, 0.15)) == [1, 1, 0]
    assert split_counts(3, (0.7, 0.15, 0.15)) == [1, 1, 1]
    assert split_counts(100, (0.7, 0.15, 0.15)) == [70, 15, 15]
    assert sum(split_counts(37, (0.5, 0.2, 0.3))) == 37


def test_stratified_split_is_stratified_and_deterministic():
    samples = [Sample(f"{c}/{i}.png", c) for c in "abc" for i in range({"a": 100, "b": 40,
                                                                         "c": 20}[c])]
    one, two = stratified_split(samples, seed=3), stratified_split(samples, seed=3)
    assert one == two
    assert stratified_split(samples, seed=4) != one
    per = Counter((s.label, s.split) for s in one)
    assert (per["a", "train"], per["a", "val"], per["a", "test"]) == (70, 15, 15)
    assert (per["c", "train"], per["c", "val"], per["c", "test"]) == (14, 3, 3)
    assert {s.path for s in one} == {s.path for s in samples}


def test_tiny_class_warns_and_goes_to_train():
    with pytest.warns(UserWarning, match="class 'x' has only 1"):
        out = stratified_split([Sample("x/0.png", "x")], seed=0)
    assert out[0].split == "train"


@pytest.mark.parametrize("folders,sizes", [
    ({"train": 10, "val": 2, "test": 3}, {"train": 30, "val": 6, "test": 9}),
    ({"Train": 10, "TEST": 3}, {"train": 24, "val": 6, "test": 9}),       # val drawn from train
    ({"train": 10, "validation": 2}, {"train": 30, "val": 6, "test": 0}),  # no test split
    ({"train": 10, "Valid": 2, "test": 3}, {"train": 30, "val": 6, "test": 9}),
    ({"TRAIN": 10}, {"train": 21, "val": 5, "test": 4}),                  # everything drawn
])
def test_split_folder_layouts_are_recognised(tmp_path, caplog, folders, sizes):
    root = split_layout(tmp_path / "imgs", folders)
    dm = ImageDataModule(root=str(root), image_size=8, ratios=(0.7, 0.15, 0.15))
    with caplog.at_level("INFO", logger="imgexp.data.splits"):
        dm.setup()
    assert dm.classes == ["a", "b"]  # never the split folders' names
    assert {k: len(v) for k, v in dm.datasets.items()} == sizes
    for split in ("val", "test"):  # a split folder's images stay in its split
        folder = next((f for f in folders if f.lower().startswith(split[:3])), None)
        if folder:
            assert {s.path.split("/")[0] for s in dm.samples if s.split == split} == {folder}
    assert sum(r.name == "imgexp.data.splits" and "split folders" in r.message
               for r in caplog.records) == 1
    if not sizes["test"]:
        assert "NO TEST SPLIT" in caplog.text


def test_val_drawn_from_train_folder_is_stratified_and_seeded(tmp_path):
    root = split_layout(tmp_path / "imgs", {"train": 20, "test": 2})

    def val_of(seed):
        dm = ImageDataModule(root=str(root), image_size=8, ratios=(0.6, 0.2, 0.2),
                             split_seed=seed)
        dm.resolve()
        return sorted(s.path for s in dm.samples if s.split == "val")

    val = val_of(3)
    # val share of train+val = 0.2 / 0.8 per class: 10 of a's 40, 5 of b's 20
    assert Counter(p.split("/")[1] for p in val) == {"a": 10, "b": 5}
    assert all(p.startswith("train/") for p in val)
    assert val_of(3) == val and val_of(4) != val


@pytest.mark.parametrize("folders,message", [
    (["val", "test"], r"has val/, test/ but no train/ folder"),
    (["cat", "dog", "test"], r"has test/ but no train/ folder"),
    (["train", "cat"], r"mixes a train/ folder with other folders \['cat'\]"),
    (["train", "val", "Validation"], r"two val folders"),
])
def test_ambiguous_split_folders_are_one_line_errors(tmp_path, folders, message):
    split_layout(tmp_path, dict.fromkeys(folders, 2))
    with pytest.raises(ImgexpError, match=message) as err:
        ImageDataModule(root=str(tmp_path), image_size=8).resolve()
    assert "\n" not in str(err.value)


def test_folders_beside_the_split_folders_are_not_read(tmp_path, caplog):
    root = split_layout(tmp_path / "imgs", {"train": 4, "test": 2, "unlabeled": 3})
    dm = ImageDataModule(root=str(root), image_size=8)
    with caplog.at_level("INFO", logger="imgexp.data.splits"):
        dm.resolve()
    assert dm.classes == ["a", "b"]
    assert not any(s.path.startswith("unlabeled/") for s in dm.samples)
    assert "['unlabeled'] beside the split folders are not read" in caplog.text


# -- data.class_map ------------------------------------------------------------------------
def test_class_map_keys_are_folder_names_whatever_yaml_made_of_them():
    folders = ["0", "1", "2", "10"]
    assert map_labels(folders, {0: "low", 1: "low", "*": "high"}) == {
        "0": "low", "1": "low", "2": "high", "10": "high"}
    assert map_labels(folders, {"2": "two"}) == {"0": "0", "1": "1", "2": "two", "10": "10"}
    assert map_labels(["True", "x"], {True: "yes"}) == {"True": "yes", "x": "x"}
    with pytest.raises(ImgexpError, match=r"data.class_map names class folder\(s\) \['7'\] "
                                          r"that do not exist; the folders are"):
        map_labels(folders, {7: "seven"}, "data.class_map")
    with pytest.raises(ImgexpError, match="maps to None"):
        map_labels(folders, {0: None})
