"""imgexp-prepare on split-folder layouts (train/ + val/ and/or test/) and with class maps
whose keys YAML reads as numbers."""

import os
import subprocess
import sys

import pytest

from helpers.prepare import make_classes, read_outputs, run_prepare_on
from imgexp.errors import ImgexpError
from imgexp.paths import PROJECT_ROOT


def test_train_and_test_folders_are_splits_not_classes(tmp_path):
    root = tmp_path / "images"
    make_classes(root / "train", {"cat": 12, "dog": 6})
    make_classes(root / "test", {"cat": 3, "dog": 3}, seed=1)
    out = run_prepare_on(root, tmp_path / "run")
    assert out.meta["classes"] == ["cat", "dog"]
    assert out.meta["split"] == "existing folders, val drawn from train"
    by_split = {s: [r for r in out.manifest if r["split"] == s] for s in ("train", "val", "test")}
    assert all(r["path"].startswith("test/") for r in by_split["test"])
    assert len(by_split["test"]) == 6
    # val: 0.15 / (0.7 + 0.15) of each train/ class, drawn from train/
    assert all(r["path"].startswith("train/") for r in by_split["val"])
    assert [r["label"] for r in by_split["val"]].count("cat") == 2
    assert [r["label"] for r in by_split["val"]].count("dog") == 1
    again = run_prepare_on(root, tmp_path / "again")
    assert again.manifest == out.manifest  # seeded


def test_split_folder_names_are_case_insensitive_and_a_missing_test_is_said(tmp_path):
    root = tmp_path / "images"
    make_classes(root / "Train", {"cat": 4, "dog": 4})
    make_classes(root / "VALIDATION", {"cat": 2, "dog": 2}, seed=1)
    out = run_prepare_on(root, tmp_path / "run")
    assert out.meta["classes"] == ["cat", "dog"]
    assert out.summary["splits"] == {"train": 8, "val": 4, "test": 0}
    assert any(w.startswith("no test split (Train/ VALIDATION/)")
               for w in out.summary["warnings"])
    make_classes(root / "Test", {"cat": 2}, seed=2)
    (root / "Train").rename(root / "cat")
    with pytest.raises(ImgexpError, match=r"has VALIDATION/, Test/ but no train/ folder"):
        run_prepare_on(root, tmp_path / "bad")


def test_document_seed_binary_relabel_is_one_override(tmp_path):
    root = tmp_path / "docs"
    make_classes(root, {"Painting": 3, "Photo": 5, "Schematics": 2, "Sketch": 2, "Text": 2})
    out = run_prepare_on(root, tmp_path / "run", "prepare.class_map={Photo: photo, *: non_photo}")
    assert out.meta["classes"] == ["non_photo", "photo"]
    assert out.summary["classes"]["non_photo"]["total"] == 9


def test_numeric_folder_names_and_the_wildcard_from_the_command_line(tmp_path):
    root = tmp_path / "levels"
    make_classes(root, {"0": 3, "1": 3, "2": 3, "10": 3})
    env = {**os.environ, "PROJECT_ROOT": str(PROJECT_ROOT),
           "PYTHONPATH": str(PROJECT_ROOT / "src"), "MPLCONFIGDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "imgexp.prepare", f"data.root={root}", "prepare.workers=1",
           "prepare.progress=false"]
    done = subprocess.run([*cmd, f"hydra.run.dir={tmp_path / 'run'}",
                           "prepare.class_map={0: low, 1: low, *: high}"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    out = read_outputs(tmp_path / "run")
    assert out.meta["classes"] == ["high", "low"]
    assert {r["path"].split("/")[0] for r in out.manifest if r["label"] == "low"} == {"0", "1"}
    done = subprocess.run([*cmd, f"hydra.run.dir={tmp_path / 'bad'}",
                           "prepare.class_map={3: low}"], capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: prepare.class_map names class folder(s) ['3'] that do not exist; the folders "
        "are ['0', '1', '10', '2']")


def test_an_empty_split_folder_is_the_same_one_line_error_in_every_stage(tmp_path):
    """Train and select refused an empty test/ with an odd hint while prepare went on without
    a test split and without a warning."""
    from imgexp.data.datamodule import ImageDataModule

    root = tmp_path / "images"
    make_classes(root / "train", {"cat": 4, "dog": 4})
    (root / "test").mkdir()
    message = rf"{root / 'test'}/ is empty: put its images in test/<class>/ or remove the folder"
    with pytest.raises(ImgexpError, match=message):
        run_prepare_on(root, tmp_path / "run")
    with pytest.raises(ImgexpError, match=message):
        ImageDataModule(root=str(root), image_size=8).resolve()


def test_the_printed_summary_is_not_cut_at_80_columns_in_a_log(tmp_path, capsys):
    from imgexp.prepare.report import print_summary

    split = "existing folders, val drawn from train, with a long explanation of the layout"
    warning = "no test split (train/ val/): a run trained on this manifest reports val " \
              "metrics only; add a test/ folder to get test metrics"
    summary = {"in_manifest": 120, "split": split, "splits": {"train": 80, "val": 40, "test": 0},
               "checked": 120, "rejected": 0, "duplicates": {"total": 0}, "ignored": 0,
               "rejected_by_reason": {}, "warnings": [warning]}
    print_summary(summary, {"a": {"train": 40, "val": 20, "test": 0},
                            "b": {"train": 40, "val": 20, "test": 0}}, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert f"120 images in the manifest ({split} split)" in lines
    assert f"warning: {warning}" in lines
