"""imgexp-select reads split-folder layouts and class maps the way training does."""

from collections import Counter

from helpers.config import compose_config
from helpers.prepare import make_classes
from imgexp.select.pipeline import list_images


def test_select_reads_train_and_test_folders_as_splits(tmp_path):
    root = tmp_path / "images"
    make_classes(root / "TRAIN", {"cat": 7, "dog": 7})
    make_classes(root / "Test", {"cat": 2, "dog": 2}, seed=1)
    cfg = compose_config("select", [f"data.root={root}"], tmp_path / "run")
    found_root, samples = list_images(cfg.data)
    assert found_root == root
    assert {s.label for s in samples} == {"cat", "dog"}
    assert Counter(s.split for s in samples) == {"train": 12, "val": 2, "test": 4}
    assert all(s.path.startswith("Test/") == (s.split == "test") for s in samples)


def test_select_applies_data_class_map(tmp_path):
    root = tmp_path / "images"
    make_classes(root, {"0": 3, "1": 3, "2": 3})
    cfg = compose_config("select", [f"data.root={root}", "data.class_map={0: low, *: high}"],
                         tmp_path / "run")
    _, samples = list_images(cfg.data)
    assert Counter(s.label for s in samples) == {"low": 3, "high": 6}
