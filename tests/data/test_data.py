"""Decoding of every image mode, splits, and the datamodule over folders / manifests."""

import io
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from imgexp.data import ImageDataModule, load_rgb
from imgexp.data.class_map import map_labels
from imgexp.data.digits import COMPLETE_MARKER, ensure_digits
from imgexp.data.image_io import UnreadableImage, open_image
from imgexp.data.splits import Sample, scan_class_folders, split_counts, stratified_split
from imgexp.errors import ImgexpError


def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA", "1"])
def test_every_mode_decodes_to_rgb_uint8(tmp_path, mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    img = Image.new(mode, (20, 10), 200 if mode not in ("P", "1") else 1)
    if mode == "I;16":
        img = Image.fromarray(np.full((10, 20), 40000, dtype=np.uint16))
    path = _save(img, tmp_path / f"x.{fmt.lower()}", format=fmt)
    arr = load_rgb(path, size=8)
    assert arr.shape == (8, 8, 3) and arr.dtype == np.uint8
    if mode == "I;16":  # scaled, not clipped to 255
        assert 150 < arr.mean() < 160


def test_palette_transparency_composites_on_white(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0] * 256)
    path = _save(img, tmp_path / "t.png", transparency=0)
    assert load_rgb(path).min() == 255


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90
    path = _save(img, tmp_path / "r.jpg", exif=exif.tobytes())
    assert open_image(path).size == (20, 40)


def test_big_jpeg_draft_decodes_near_target_size(tmp_path):
    path = _save(Image.new("RGB", (2000, 1600), (1, 2, 3)), tmp_path / "big.jpg")
    img = open_image(path, size=200)
    assert 250 <= img.size[0] <= 500  # DCT scaling 1/4..1/8, never below the target
    assert load_rgb(path, size=200).shape == (200, 200, 3)


@pytest.mark.parametrize("content,reason", [
    (b"", "not an image"), (b"hello, I am text", "not an image")])
def test_unreadable_files_raise_with_reason(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(UnreadableImage, match=reason):
        load_rgb(path)


def test_truncated_jpeg_is_unreadable(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
                    ).save(buf, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(UnreadableImage, match="cannot decode"):
        load_rgb(path)


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


def test_digits_export_is_complete_and_idempotent(digits_root):
    files = list(digits_root.rglob("*.png"))
    assert len(files) == 1797 and (digits_root / COMPLETE_MARKER).exists()
    before = (digits_root / "0" / "0000.png").stat().st_mtime_ns
    ensure_digits(digits_root)
    assert (digits_root / "0" / "0000.png").stat().st_mtime_ns == before


def test_partial_digits_export_is_redone(tmp_path):
    (tmp_path / "digits" / "3").mkdir(parents=True)  # an interrupted older export
    ensure_digits(tmp_path / "digits")
    assert len(list((tmp_path / "digits").rglob("*.png"))) == 1797


def _folder(root: Path, counts: dict[str, int], size=12) -> Path:
    rng = np.random.default_rng(0)
    for label, n in counts.items():
        for i in range(n):
            _save(Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)),
                  root / label / f"{i}.png")
    return root


def test_folder_datamodule_batches_uint8_and_skips_hidden(tmp_path):
    root = _folder(tmp_path / "imgs", {"cat": 10, "dog": 10})
    (root / "cat" / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / "nested").mkdir()
    _save(Image.new("RGB", (5, 5)), root / "cat" / "nested" / "deep.png")
    dm = ImageDataModule(root=str(root), image_size=8, batch_size=4)
    dm.setup()
    assert dm.classes == ["cat", "dog"]
    assert sum(len(d) for d in dm.datasets.values()) == 21
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (4, 3, 8, 8)


def test_existing_split_folders_are_taken_as_they_are(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        _folder(tmp_path / split, {"a": n, "b": n})
    dm = ImageDataModule(root=str(tmp_path), image_size=8)
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 8, "val": 4, "test": 6}


def test_manifest_datamodule_reads_root_and_class_order(tmp_path):
    root = _folder(tmp_path / "imgs", {"a": 3, "b": 3})
    rows = [(f"{c}/{i}.png", c, ["train", "val", "test"][i]) for c in "ab" for i in range(3)]
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "m.json").write_text(f'{{"root": "{root}", "classes": ["b", "a"]}}')
    dm = ImageDataModule(manifest=str(tmp_path / "m.csv"), image_size=8)
    dm.setup()
    assert dm.classes == ["b", "a"] and dm.datasets["train"].labels == [1, 0]


def test_ram_cache_serves_second_epoch_without_decoding(tmp_path, monkeypatch):
    root = _folder(tmp_path / "imgs", {"a": 6, "b": 6})
    dm = ImageDataModule(root=str(root), image_size=8, batch_size=4, cache="ram")
    first = torch.cat([b["image"] for b in dm.val_dataloader()])
    monkeypatch.setattr("imgexp.data.dataset.load_rgb",
                        lambda *a, **k: pytest.fail("decoded again"))
    second = torch.cat([b["image"] for b in dm.val_dataloader()])
    assert torch.equal(first, second)


def test_balanced_sampler_evens_out_classes(tmp_path):
    root = _folder(tmp_path / "imgs", {"big": 60, "small": 6}, size=4)
    dm = ImageDataModule(root=str(root), image_size=4, batch_size=8, sampler="balanced")
    torch.manual_seed(0)
    labels = torch.cat([b["label"] for _ in range(5) for b in dm.train_dataloader()])
    share = labels.float().mean().item()  # class 1 = small
    assert 0.4 < share < 0.6


def test_unreadable_image_is_skipped_not_fatal(tmp_path):
    root = _folder(tmp_path / "imgs", {"a": 4, "b": 4})
    (root / "a" / "broken.png").write_bytes(b"not a png")
    dm = ImageDataModule(root=str(root), image_size=8, batch_size=16, ratios=(1, 0, 0))
    batch = next(iter(dm.train_dataloader()))
    assert len(batch["label"]) == 8 and len(batch["skipped"]) == 1
    assert "broken.png" in batch["skipped"][0]


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "no class folders"),
    (lambda p: (p / "empty_class").mkdir() or p, "has no image files"),
])
def test_bad_data_roots_are_clear_errors(tmp_path, make, message):
    with pytest.raises(ImgexpError, match=message):
        scan_class_folders(make(tmp_path))


def test_class_with_no_readable_image_is_a_clear_error(tmp_path):
    root = _folder(tmp_path / "imgs", {"a": 3})
    (root / "b").mkdir()
    (root / "b" / "x.jpg").write_bytes(b"text, not a jpeg")
    with pytest.raises(ImgexpError, match="class 'b' has no readable image"):
        ImageDataModule(root=str(root)).resolve()


# -- split-folder layouts (train/ val/ test/, any two of them with train/, train/ alone) ------
def _layout(root: Path, folders: dict[str, int]) -> Path:
    for folder, n in folders.items():
        _folder(root / folder, {"a": 2 * n, "b": n})
    return root


@pytest.mark.parametrize("folders,sizes", [
    ({"train": 10, "val": 2, "test": 3}, {"train": 30, "val": 6, "test": 9}),
    ({"Train": 10, "TEST": 3}, {"train": 24, "val": 6, "test": 9}),       # val drawn from train
    ({"train": 10, "validation": 2}, {"train": 30, "val": 6, "test": 0}),  # no test split
    ({"train": 10, "Valid": 2, "test": 3}, {"train": 30, "val": 6, "test": 9}),
    ({"TRAIN": 10}, {"train": 21, "val": 5, "test": 4}),                  # everything drawn
])
def test_split_folder_layouts_are_recognised(tmp_path, caplog, folders, sizes):
    root = _layout(tmp_path / "imgs", folders)
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
    root = _layout(tmp_path / "imgs", {"train": 20, "test": 2})

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
    _layout(tmp_path, dict.fromkeys(folders, 2))
    with pytest.raises(ImgexpError, match=message) as err:
        ImageDataModule(root=str(tmp_path), image_size=8).resolve()
    assert "\n" not in str(err.value)


def test_folders_beside_the_split_folders_are_not_read(tmp_path, caplog):
    root = _layout(tmp_path / "imgs", {"train": 4, "test": 2, "unlabeled": 3})
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


def test_class_map_merges_folder_and_manifest_classes(tmp_path):
    root = _folder(tmp_path / "imgs", {"Photo": 6, "Painting": 3, "Sketch": 3})
    dm = ImageDataModule(root=str(root), image_size=8, class_map={"Photo": "photo",
                                                                  "*": "non_photo"})
    dm.setup()
    assert dm.classes == ["non_photo", "photo"]
    assert sum(s.label == "non_photo" for s in dm.samples) == 6
    assert {s.label for s in dm.samples if s.split == "test"} == {"non_photo", "photo"}
    dm.split_table().to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "m.json").write_text(f'{{"root": "{root}", "classes": ["photo", "non_photo"]}}')
    merged = ImageDataModule(manifest=str(tmp_path / "m.csv"), class_map={"non_photo": "other"})
    merged.resolve()
    assert merged.classes == ["photo", "other"]
    assert Counter(s.label for s in merged.samples) == {"photo": 6, "other": 6}


def test_training_with_data_class_map_gives_the_merged_classes(tmp_path, data_dir):
    from helpers.config import train_config
    from imgexp.models.factory import read_checkpoint
    from imgexp.train.fit import fit_and_test

    cfg = train_config(["data.class_map={0: low, 1: low, 2: low, 3: low, 4: low, *: high}",
                        "data.image_size=8", "model.backbone.channels=[4]",
                        "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                        "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"],
                       tmp_path, data_dir)
    metrics = fit_and_test(cfg)
    ckpt = read_checkpoint(metrics["best_model_path"])
    assert ckpt["imgexp"]["class_names"] == ["high", "low"]
    split = pd.read_csv(tmp_path / "data_split.csv", dtype=str)
    assert set(split["label"]) == {"high", "low"}
    assert (split.loc[split["path"].str.startswith("3/"), "label"] == "low").all()


def test_a_run_without_test_split_says_so_and_reports_no_test_metrics(tmp_path, caplog):
    from helpers.config import compose_config
    from imgexp.train.fit import fit_and_test

    root = _layout(tmp_path / "imgs", {"train": 4, "val": 2})
    cfg = compose_config("train", ["logger=csv", "~callbacks.progress_bar",
                                   "trainer.enable_progress_bar=false", "data=folder",
                                   f"data.root={root}", "data.image_size=8",
                                   "data.num_workers=0", "model.backbone.channels=[4]",
                                   "trainer.max_epochs=1"], tmp_path / "run")
    with caplog.at_level("INFO"):
        metrics = fit_and_test(cfg)
    assert "val/acc" in metrics and not any(k.startswith("test/") for k in metrics)
    assert "NO TEST SPLIT" in caplog.text and "no test split under" in caplog.text


def test_evaluating_a_split_the_folders_lack_names_the_splits_there_are(tmp_path):
    from imgexp.models.data_config import split_loader

    dm = ImageDataModule(root=str(_layout(tmp_path / "imgs", {"train": 4, "val": 2})),
                         image_size=8)
    dm.setup()
    with pytest.raises(ImgexpError) as err:
        split_loader(dm, "test")
    assert str(err.value).endswith("has no images: choose split=train or split=val")
