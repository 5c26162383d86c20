"""imgexp-prepare as a stage: the manifest contract, reproducible splits, duplicates and their
groups, existing splits, relabelling, quarantine/restore, export, and training from its output."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers.config import compose_config, train_config
from helpers.prepare import (
    fingerprint,
    make_classes,
    run_prepare_on,
    smooth_image,
)
from imgexp.data import ImageDataModule, read_manifest
from imgexp.errors import ImgexpError
from imgexp.paths import PROJECT_ROOT
from imgexp.prepare.pipeline import run_prepare
from imgexp.prepare.tables import read_csv


def test_manifest_follows_the_contract_and_is_reproducible(tmp_path):
    root = tmp_path / "images"
    make_classes(root, {"cat": 10, "dog": 7, "eel": 5})
    first = run_prepare_on(root, tmp_path / "a", "prepare.seed=3")
    again = run_prepare_on(root, tmp_path / "b", "prepare.seed=3", "prepare.workers=1")
    other_seed = run_prepare_on(root, tmp_path / "c", "prepare.seed=4")
    for name in ("manifest.csv", "manifest.json"):
        assert (first.run_dir / name).read_bytes() == (again.run_dir / name).read_bytes()
    assert [r["split"] for r in other_seed.manifest] != [r["split"] for r in first.manifest]

    assert list(first.manifest[0]) == ["path", "label", "split", "sha256", "width", "height"]
    for row in first.manifest:
        assert row["sha256"] == hashlib.sha256((root / row["path"]).read_bytes()).hexdigest()
        with Image.open(root / row["path"]) as img:
            assert img.size == (int(row["width"]), int(row["height"]))
    assert first.meta == {"root": str(root), "classes": ["cat", "dog", "eel"], "seed": 3,
                          "ratios": [0.7, 0.15, 0.15], "split": "stratified", "files": 22,
                          "created_by": "imgexp-prepare"}
    # stratified: 7/1/2... per class from split_counts, summed in the summary
    assert first.summary["classes"]["cat"] == {"train": 7, "val": 2, "test": 1, "total": 10}
    assert first.summary["splits"] == {"train": 15, "val": 4, "test": 3}
    assert (first.run_dir / "class_distribution.png").stat().st_size > 10_000


@pytest.fixture
def copies(tmp_path) -> Path:
    """cat/a.png, an exact copy older than it, and a 2x upscaled copy (larger, near)."""
    root = tmp_path / "images"
    make_classes(root, {"cat": 4, "dog": 4}, seed=1)
    original = smooth_image(500, (32, 32))
    original.save(root / "cat" / "a.png")
    (root / "cat" / "c_old.png").write_bytes((root / "cat" / "a.png").read_bytes())
    original.resize((64, 64), Image.BICUBIC).save(root / "cat" / "b_big.png")
    for name, mtime in (("a.png", 2_000_000_000), ("c_old.png", 1_000_000_000),
                        ("b_big.png", 1_500_000_000)):
        os.utime(root / "cat" / name, (mtime, mtime))
    return root


@pytest.mark.parametrize(("keep", "kept"), [("first", "cat/a.png"), ("largest", "cat/b_big.png"),
                                             ("oldest", "cat/c_old.png")])
def test_one_copy_of_a_duplicate_group_is_kept_by_the_rule(copies, tmp_path, keep, kept):
    out = run_prepare_on(copies, tmp_path / "run", "prepare.near_dup=true", f"prepare.keep={keep}")
    group = {"cat/a.png", "cat/b_big.png", "cat/c_old.png"}
    assert {r["path"] for r in out.manifest} & group == {kept}
    assert {d["path"] for d in out.duplicates} == group - {kept}
    for d in out.duplicates:
        assert d["kept"] == kept
        exact = {d["path"], kept} == {"cat/a.png", "cat/c_old.png"}
        assert d["kind"] == ("exact" if exact else "near")
        assert int(d["distance"]) <= (0 if exact else 4)
    assert len(out.manifest) == 9


def test_near_duplicates_are_only_searched_when_asked(copies, tmp_path):
    out = run_prepare_on(copies, tmp_path / "run", "prepare.keep=oldest")
    assert [(d["path"], d["kept"], d["kind"]) for d in out.duplicates] == \
        [("cat/a.png", "cat/c_old.png", "exact")]
    assert "cat/b_big.png" in {r["path"] for r in out.manifest}
    assert out.summary["duplicates"] == {"total": 1, "exact": 1, "near": 0,
                                         "label_conflicts": 0, "dropped": 1}


def test_kept_duplicates_never_straddle_splits(tmp_path):
    root = tmp_path / "images"
    make_classes(root, {"cat": 6, "dog": 6})
    for i in range(6):  # six groups of three copies (exact, re-encoded, resized)
        img = smooth_image(900 + i, (32, 32))
        img.save(root / "cat" / f"g{i}_a.png")
        (root / "cat" / f"g{i}_b.png").write_bytes((root / "cat" / f"g{i}_a.png").read_bytes())
        img.resize((48, 48), Image.BICUBIC).save(root / "cat" / f"g{i}_c.png")
    for seed in (0, 1, 2):
        out = run_prepare_on(root, tmp_path / f"run{seed}", "prepare.near_dup=true",
                             "prepare.drop_duplicates=false", f"prepare.seed={seed}")
        split = {r["path"]: r["split"] for r in out.manifest}
        assert len(split) == 30  # every copy stays
        groups = {d["kept"]: {d["kept"]} for d in out.duplicates}
        for d in out.duplicates:
            groups[d["kept"]].add(d["path"])
        assert sorted(len(g) for g in groups.values()) == [3] * 6
        for group in groups.values():
            assert len({split[p] for p in group}) == 1, group


def test_copies_with_different_labels_are_flagged(tmp_path):
    root = tmp_path / "images"
    make_classes(root, {"cat": 4, "dog": 4})
    (root / "dog" / "zz_copy.png").write_bytes((root / "cat" / "cat_00.png").read_bytes())
    out = run_prepare_on(root, tmp_path / "run")
    assert out.duplicates == [{"path": "dog/zz_copy.png", "kept": "cat/cat_00.png",
                               "kind": "exact", "distance": "0", "label": "dog",
                               "kept_label": "cat"}]
    assert out.summary["duplicates"]["label_conflicts"] == 1
    assert any("different label" in w for w in out.summary["warnings"])


def test_a_class_smaller_than_the_splits_goes_to_train_first_with_a_warning(tmp_path):
    root = tmp_path / "images"
    make_classes(root, {"cat": 6, "rare": 2})
    out = run_prepare_on(root, tmp_path / "run")
    assert sorted(r["split"] for r in out.manifest if r["label"] == "rare") == ["train", "val"]
    assert any("class 'rare' has only 2 image(s)" in w for w in out.summary["warnings"])


def test_existing_split_folders_are_respected(tmp_path):
    root = tmp_path / "images"
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        make_classes(root / split, {"cat": n, "dog": n}, seed=len(split))
    make_classes(root / "val", {"eel": 2}, seed=9)  # a class without training images
    leak = root / "test" / "cat" / "leak.png"  # a copy of a training image
    leak.write_bytes((root / "train" / "cat" / "cat_00.png").read_bytes())
    out = run_prepare_on(root, tmp_path / "kept")
    assert {r["path"]: r["split"] for r in out.manifest} == {
        r["path"]: r["path"].split("/")[0] for r in out.manifest}
    assert out.meta["classes"] == ["cat", "dog", "eel"]
    assert out.meta["split"] == "existing folders"
    assert out.summary["warnings"] == [
        "class 'eel' has no training image (its split folders lack train/eel/)"]
    assert out.duplicates[0]["path"] == "test/cat/leak.png"
    assert "test/cat/leak.png" not in {r["path"] for r in out.manifest}
    redrawn = run_prepare_on(root, tmp_path / "redrawn", "prepare.keep_existing_split=false")
    assert redrawn.meta["split"] == "stratified"
    assert redrawn.summary["classes"]["cat"] == {"train": 6, "val": 1, "test": 1, "total": 8}


def test_class_map_relabels_folders(tmp_path):
    root = tmp_path / "images"
    make_classes(root, {"photo": 4, "painting": 3, "sketch": 3})
    out = run_prepare_on(root, tmp_path / "run",
                         "prepare.class_map={photo: photo, *: non_photo}")
    assert out.meta["classes"] == ["non_photo", "photo"]
    assert {r["label"] for r in out.manifest if r["path"].startswith("sketch/")} == {"non_photo"}
    assert out.summary["classes"]["non_photo"]["total"] == 6
    with pytest.raises(ImgexpError, match=r"class folder\(s\) \['photos'\] that do not exist"):
        run_prepare_on(root, tmp_path / "bad", "prepare.class_map={photos: photo}")


def test_quarantine_moves_rejected_files_and_restore_reverses_exactly(tmp_path):
    root = tmp_path / "images"
    make_classes(root, {"cat": 4, "dog": 4})
    (root / "cat" / "deep" / "er").mkdir(parents=True)
    (root / "cat" / "deep" / "er" / "note.jpg").write_text("not a photo")
    (root / "dog" / "empty.png").touch()
    (root / "dog" / "cut.png").write_bytes((root / "dog" / "dog_00.png").read_bytes()[:300])
    os.symlink("loop.jpg", root / "dog" / "loop.jpg")
    os.utime(root / "dog" / "cut.png", (1_234_567_890, 1_234_567_890))
    before = fingerprint(root)
    logs = tmp_path / "outputs"
    run_dir = logs / "prepare" / "runs" / "first"
    out = run_prepare_on(root, run_dir, "prepare.quarantine=move", touches_source=True)
    bad = ["cat/deep/er/note.jpg", "dog/cut.png", "dog/empty.png", "dog/loop.jpg"]
    assert sorted(out.rejected) == bad and out.summary["quarantined"] == 4
    for rel in bad:
        assert not os.path.lexists(root / rel)
        assert os.path.lexists(run_dir / "quarantine" / rel)
    assert fingerprint(root) == {k: v for k, v in before.items()
                                 if os.fsdecode(k) not in bad}
    cfg = compose_config("prepare", ["prepare.restore=true", f"paths.log_dir={logs}"],
                         tmp_path / "restore")
    assert run_prepare(cfg)["restored"] == 4
    assert fingerprint(root) == before
    assert not (run_dir / "quarantine").exists()
    with pytest.raises(ImgexpError, match="already restored"):
        run_prepare(compose_config("prepare", [f"prepare.restore={run_dir}"], tmp_path / "x"))


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_export_materialises_the_split_as_folders(tmp_path, mode):
    root = tmp_path / "images"
    make_classes(root, {"photo": 5, "sketch": 5})
    (root / "sketch" / "sub").mkdir()
    smooth_image(77).save(root / "sketch" / "sub" / "scan.txt", "PNG")
    out = run_prepare_on(root, tmp_path / "run", f"prepare.export={mode}",
                         "prepare.class_map={photo: photo, sketch: other}")
    export = out.run_dir / "export"
    files = sorted(p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file())
    row = out.row("sketch/sub/scan.txt")
    assert f"{row['split']}/other/sketch/sub/scan.txt.png" in files
    assert len(files) == len(out.manifest) == 11
    for r in out.manifest:
        if r["label"] == "photo":
            target = export / r["split"] / "photo" / Path(r["path"]).name
            assert target.read_bytes() == (root / r["path"]).read_bytes()
            assert target.is_symlink() == (mode == "symlink")
            assert (target.stat().st_ino == (root / r["path"]).stat().st_ino) == \
                (mode != "copy")
    folders = ImageDataModule(root=str(export))
    folders.resolve()
    assert sorted((s.label, s.split) for s in folders.samples) == \
        sorted((r["label"], r["split"]) for r in out.manifest)


def test_training_reads_the_manifest(tmp_path):
    root = tmp_path / "images"
    make_classes(root, {"cat": 6, "dog": 6})
    smooth_image(5).convert("CMYK").save(root / "cat" / 'cmyk, "été".jpg')
    (root / "dog" / "notes.jpg").write_text("not an image")
    out = run_prepare_on(root, tmp_path / "prepare")
    _, classes, samples = read_manifest(out.run_dir / "manifest.csv")
    assert classes == ["cat", "dog"] and len(samples) == 13
    cfg = train_config(["data=manifest", f"data.manifest={out.run_dir / 'manifest.csv'}",
                        "trainer=debug", "data.image_size=16", "data.batch_size=64",
                        "data.num_workers=0", "model.backbone.channels=[8]"],
                       tmp_path / "train", data_dir=tmp_path)  # digits not needed
    from imgexp.train.fit import fit_and_test

    metrics = fit_and_test(cfg)
    assert metrics["data/skipped_images"] == 0
    trained_on = [(r["path"], r["label"], r["split"])
                  for r in read_csv(tmp_path / "train" / "data_split.csv")]
    assert trained_on == [(r["path"], r["label"], r["split"]) for r in out.manifest]


@pytest.mark.parametrize(("override", "message"), [
    ("prepare.keep=biggest", "prepare.keep='biggest' is not a rule"),
    ("prepare.quarantine=delete", "prepare.quarantine='delete' is not an option"),
    ("prepare.export=move", "prepare.export='move' is not an option"),
    ("prepare.near_dup_radius=70", "must be between 0 and 64"),
])
def test_bad_options_are_named(tmp_path, override, message):
    root = tmp_path / "images"
    make_classes(root, {"cat": 3, "dog": 3})
    before = fingerprint(root)
    cfg = compose_config("prepare", [f"data.root={root}", "prepare.progress=false", override],
                         tmp_path / "run")
    with pytest.raises(ImgexpError, match=message):
        run_prepare(cfg)
    assert fingerprint(root) == before


def test_a_root_without_any_usable_image_is_an_error_that_points_at_the_reasons(tmp_path):
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "a.jpg").write_text("hello")
    before = fingerprint(root)
    cfg = compose_config("prepare", [f"data.root={root}", "prepare.progress=false"],
                         tmp_path / "run")
    with pytest.raises(ImgexpError, match="no usable image under .*rejected.csv"):
        run_prepare(cfg)
    assert fingerprint(root) == before
    assert read_csv(tmp_path / "run" / "rejected.csv") == [
        {"path": "cat/a.jpg", "reason": "not an image: the content is a text file"}]


def test_command_line_prints_the_summary_and_one_line_errors(tmp_path):
    root = tmp_path / "images"
    make_classes(root, {"cat": 4, "dog": 4})
    (root / "dog" / "empty.jpg").touch()
    before = fingerprint(root)
    env = {**os.environ, "PROJECT_ROOT": str(PROJECT_ROOT),
           "PYTHONPATH": str(PROJECT_ROOT / "src"), "MPLCONFIGDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "imgexp.prepare", f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run([*cmd, f"data.root={root}"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "8 images in the manifest (stratified split)" in done.stdout
    assert "rejected (zero bytes): 1" in done.stdout
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["in_manifest"] == 8
    assert fingerprint(root) == before
    done = subprocess.run([*cmd, f"data.root={tmp_path / 'nowhere'}"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: data root {tmp_path / 'nowhere'} does not exist or is not a folder: set "
        "data.root=/path/to/images (one sub-folder per class)")


def test_streamed_and_in_memory_checks_agree(tmp_path, monkeypatch):
    from imgexp.prepare import checks as inspect

    make_classes(tmp_path, {"cat": 1}, ext=".jpg")
    in_memory = inspect.inspect_file(str(tmp_path), "cat/cat_00.jpg", inspect.CheckOptions())
    monkeypatch.setattr(inspect, "READ_WHOLE_BELOW", 0)  # every file counts as big
    streamed = inspect.inspect_file(str(tmp_path), "cat/cat_00.jpg", inspect.CheckOptions())
    assert streamed == in_memory and streamed.ok
    assert streamed.sha256 == hashlib.sha256((tmp_path / "cat/cat_00.jpg").read_bytes()
                                             ).hexdigest()
