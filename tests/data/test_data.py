"""The datamodule over folders / manifests / the built-in digits, and its bad inputs."""

from collections import Counter

import pandas as pd
import pytest
import torch
from PIL import Image

from helpers.images import class_folders, save_image, split_layout
from imgexp.data import ImageDataModule
from imgexp.data.digits import COMPLETE_MARKER, ensure_digits
from imgexp.data.splits import scan_class_folders
from imgexp.errors import ImgexpError


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



def test_folder_datamodule_batches_uint8_and_skips_hidden(tmp_path):
    root = class_folders(tmp_path / "imgs", {"cat": 10, "dog": 10})
    (root / "cat" / ".DS_Store").write_bytes(b"junk")
    (root / "cat" / "nested").mkdir()
    save_image(Image.new("RGB", (5, 5)), root / "cat" / "nested" / "deep.png")
    dm = ImageDataModule(root=str(root), image_size=8, batch_size=4)
    dm.setup()
    assert dm.classes == ["cat", "dog"]
    assert sum(len(d) for d in dm.datasets.values()) == 21
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (4, 3, 8, 8)


def test_existing_split_folders_are_taken_as_they_are(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        class_folders(tmp_path / split, {"a": n, "b": n})
    dm = ImageDataModule(root=str(tmp_path), image_size=8)
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 8, "val": 4, "test": 6}


def test_manifest_datamodule_reads_root_and_class_order(tmp_path):
    root = class_folders(tmp_path / "imgs", {"a": 3, "b": 3})
    rows = [(f"{c}/{i}.png", c, ["train", "val", "test"][i]) for c in "ab" for i in range(3)]
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "m.json").write_text(f'{{"root": "{root}", "classes": ["b", "a"]}}')
    dm = ImageDataModule(manifest=str(tmp_path / "m.csv"), image_size=8)
    dm.setup()
    assert dm.classes == ["b", "a"] and dm.datasets["train"].labels == [1, 0]


def test_ram_cache_serves_second_epoch_without_decoding(tmp_path, monkeypatch):
    root = class_folders(tmp_path / "imgs", {"a": 6, "b": 6})
    dm = ImageDataModule(root=str(root), image_size=8, batch_size=4, cache="ram")
    first = torch.cat([b["image"] for b in dm.val_dataloader()])
    monkeypatch.setattr("imgexp.data.dataset.load_rgb",
                        lambda *a, **k: pytest.fail("decoded again"))
    second = torch.cat([b["image"] for b in dm.val_dataloader()])
    assert torch.equal(first, second)


def test_balanced_sampler_evens_out_classes(tmp_path):
    root = class_folders(tmp_path / "imgs", {"big": 60, "small": 6}, size=4)
    dm = ImageDataModule(root=str(root), image_size=4, batch_size=8, sampler="balanced")
    torch.manual_seed(0)
    labels = torch.cat([b["label"] for _ in range(5) for b in dm.train_dataloader()])
    share = labels.float().mean().item()  # class 1 = small
    assert 0.4 < share < 0.6


def test_unreadable_image_is_skipped_not_fatal(tmp_path):
    root = class_folders(tmp_path / "imgs", {"a": 4, "b": 4})
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
    root = class_folders(tmp_path / "imgs", {"a": 3})
    (root / "b").mkdir()
    (root / "b" / "x.jpg").write_bytes(b"text, not a jpeg")
    with pytest.raises(ImgexpError, match="class 'b' has no readable image"):
        ImageDataModule(root=str(root)).resolve()


def test_class_map_merges_folder_and_manifest_classes(tmp_path):
    root = class_folders(tmp_path / "imgs", {"Photo": 6, "Painting": 3, "Sketch": 3})
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

    root = split_layout(tmp_path / "imgs", {"train": 4, "val": 2})
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

    dm = ImageDataModule(root=str(split_layout(tmp_path / "imgs", {"train": 4, "val": 2})),
                         image_size=8)
    dm.setup()
    with pytest.raises(ImgexpError) as err:
        split_loader(dm, "test")
    assert str(err.value).endswith("has no images: choose split=train or split=val")
