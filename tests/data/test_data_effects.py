"""Effect tests for the README's Data options: each composes conf/train.yaml with the switch, as
the command line does, builds the datamodule the run would build, and measures what the switch
is said to change, against the default. Nothing here trains."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.config import train_config
from imgexp.data.build import build_datamodule
from imgexp.data.image_io import load_rgb


def _dm(tmp_path, data_dir, overrides):
    return build_datamodule(train_config(overrides, tmp_path / "run", data_dir))


def _folder(root, counts: dict[str, int], size: int = 12):
    """Class folders of distinct noise images (so every augmentation visibly moves pixels)."""
    rng = np.random.default_rng(0)
    for label, n in counts.items():
        (root / label).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def test_image_size_and_batch_size_reach_the_batches(tmp_path, data_dir):
    for size, batch in ((12, 8), (20, 5)):
        dm = _dm(tmp_path, data_dir, [f"data.image_size={size}", f"data.batch_size={batch}"])
        images = next(iter(dm.train_dataloader()))["image"]
        assert images.shape == (batch, 3, size, size)
        assert next(iter(dm.val_dataloader()))["image"].shape[-2:] == (size, size)


def test_num_workers_reaches_the_loaders(tmp_path, data_dir):
    dm = _dm(tmp_path, data_dir, ["data.num_workers=2"])
    assert dm.train_dataloader().num_workers == 2 and dm.test_dataloader().num_workers == 2


def test_ratios_set_the_split_shares(tmp_path, data_dir):
    for ratios in ([0.7, 0.15, 0.15], [0.5, 0.2, 0.3]):
        dm = _dm(tmp_path, data_dir, [f"data.ratios=[{','.join(map(str, ratios))}]"])
        splits = dm.split_table()["split"].value_counts(normalize=True)
        # rounded per class (10 classes of ~180 images): a share moves by < 1 image per class
        for share, name in zip(ratios, ("train", "val", "test"), strict=True):
            assert splits[name] == pytest.approx(share, abs=10 / 1797 + 1e-9)


def test_split_seed_redraws_the_split_and_seed_feeds_it(tmp_path, data_dir):
    def table(*overrides):
        return _dm(tmp_path, data_dir, list(overrides)).split_table()

    base = table("data.split_seed=1")
    assert base.equals(table("data.split_seed=1"))
    other = table("data.split_seed=2")
    assert not base.equals(other)
    assert sorted(base["path"]) == sorted(other["path"])  # same images, other assignment
    # data.split_seed defaults to ${seed}: the run's seed changes the split too
    from_seed = table("seed=1")
    assert from_seed.equals(base) and not from_seed.equals(table("seed=2"))


def _count_decodes(monkeypatch) -> Counter:
    import imgexp.data.dataset as dataset

    calls: Counter = Counter()
    real = dataset.load_rgb

    def counting(path, size):
        calls[str(path)] += 1
        return real(path, size)

    monkeypatch.setattr(dataset, "load_rgb", counting)
    return calls


@pytest.mark.parametrize("cache", ["ram", "null"])
def test_cache_ram_decodes_each_image_once_over_epochs(tmp_path, data_dir, monkeypatch, cache):
    root = _folder(tmp_path / "imgs", {"a": 10, "b": 10})
    dm = _dm(tmp_path, data_dir, ["data=folder", f"data.root={root}", "data.num_workers=0",
                                  "data.image_size=8", "data.batch_size=4", f"data.cache={cache}",
                                  "augmentation=light"])
    calls = _count_decodes(monkeypatch)
    for _epoch in range(3):
        for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(),
                       dm.gallery_dataloader()):
            for _batch in loader:
                pass
    if cache == "null":
        assert min(calls.values()) >= 3  # the control: without the cache every epoch decodes
        return
    # each image decoded once over 3 epochs of every loader (the gallery shares train's cache)
    assert set(calls.values()) == {1} and len(calls) == len(dm.split_table())
    val = dm.datasets["val"]
    for batch in dm.val_dataloader():  # and the cache serves what decoding gives
        for i, image in zip(batch["index"].tolist(), batch["image"], strict=True):
            decoded = load_rgb(val.root / val.items[i][0], 8)
            assert torch.equal(image, torch.from_numpy(decoded).permute(2, 0, 1))


def test_cache_ram_is_shared_by_the_loader_workers(tmp_path, data_dir):
    root = _folder(tmp_path / "imgs", {"a": 8, "b": 8})
    dm = _dm(tmp_path, data_dir, ["data=folder", f"data.root={root}", "data.num_workers=2",
                                  "data.image_size=8", "data.batch_size=4", "data.cache=ram",
                                  "data.ratios=[0.5,0.5,0]"])
    for _batch in dm.val_dataloader():
        pass
    # decoded in two worker processes, seen here: any worker of the next epoch finds them too
    assert dm.datasets["val"].cache.filled.all()
    assert not dm.datasets["train"].cache.filled.any()


def test_balanced_sampler_evens_out_drawn_classes(tmp_path, data_dir):
    root = _folder(tmp_path / "imgs", {"big": 60, "small": 6}, size=4)
    common = ["data=folder", f"data.root={root}", "data.num_workers=0", "data.image_size=4",
              "data.batch_size=8", "data.ratios=[1,0,0]"]

    def small_share(*overrides) -> float:
        dm = _dm(tmp_path, data_dir, [*common, *overrides])
        torch.manual_seed(0)
        labels = torch.cat([b["label"] for _ in range(10) for b in dm.train_dataloader()])
        return (labels == dm.classes.index("small")).float().mean().item()

    assert small_share() < 0.15  # 6 of 66 without the sampler
    assert 0.4 < small_share("data.sampler=balanced") < 0.6


def test_pk_sampler_gives_p_classes_of_k_images(tmp_path, data_dir):
    # the embedding head picks task=metric, which sets data.sampler=pk; K and the batch size decide P
    dm = _dm(tmp_path, data_dir, ["model/head=embedding", "model/loss=hard_triplet",
                                  "data.batch_size=12", "data.samples_per_class=3",
                                  "data.image_size=8"])
    assert dm.sampler == "pk"
    batches = [b["label"].tolist() for _, b in zip(range(10), dm.train_dataloader(), strict=False)]
    for labels in batches:
        assert sorted(Counter(labels).values()) == [3] * 4  # P = 12 // 3 classes x K = 3
    plain = _dm(tmp_path, data_dir, ["data.batch_size=12", "data.image_size=8"])
    torch.manual_seed(0)
    labels = next(iter(plain.train_dataloader()))["label"].tolist()
    assert sorted(Counter(labels).values()) != [3] * 4


def test_min_per_class_repeats_small_classes_only(tmp_path, data_dir):
    root = _folder(tmp_path / "imgs", {"big": 30, "small": 5}, size=4)
    common = ["data=folder", f"data.root={root}", "data.num_workers=0", "data.image_size=4",
              "data.batch_size=5", "data.ratios=[1,0,0]"]

    def drawn(*overrides) -> Counter:
        dm = _dm(tmp_path, data_dir, [*common, *overrides])
        labels = torch.cat([b["label"] for b in dm.train_dataloader()]).tolist()
        return Counter(dm.classes[i] for i in labels)

    assert drawn() == {"big": 30, "small": 5}
    assert drawn("data.min_per_class=20") == {"big": 30, "small": 20}


@pytest.mark.parametrize("augmentation", ["light", "geometric", "digits"])
def test_augmentation_changes_train_images_but_not_eval(tmp_path, data_dir, augmentation):
    root = _folder(tmp_path / "imgs", {"a": 12, "b": 12})
    common = ["data=folder", f"data.root={root}", "data.num_workers=0", "data.image_size=12",
              "data.batch_size=24", "data.ratios=[0.5,0.25,0.25]"]

    def changed_share(dm, loader) -> float:
        batch = next(iter(loader))
        dataset = loader.dataset
        plain = [torch.from_numpy(dataset.load(i)).permute(2, 0, 1) for i in batch["index"]]
        same = [torch.equal(a, b) for a, b in zip(batch["image"], plain, strict=True)]
        return 1 - np.mean(same)

    torch.manual_seed(0)
    dm = _dm(tmp_path, data_dir, [*common, f"augmentation={augmentation}"])
    assert changed_share(dm, dm.train_dataloader()) > 0.3
    assert changed_share(dm, dm.val_dataloader()) == 0
    assert changed_share(dm, dm.test_dataloader()) == 0
    assert changed_share(dm, dm.gallery_dataloader()) == 0
    none = _dm(tmp_path, data_dir, [*common, "augmentation=none"])
    assert changed_share(none, none.train_dataloader()) == 0


@pytest.mark.parametrize("budget_mb, decodes, used", [(1, 1, "ram"), (0.001, 3, "none")])
def test_cache_auto_caches_only_within_its_budget(tmp_path, data_dir, monkeypatch, caplog,
                                                  budget_mb, decodes, used):
    # 20 images of 8x8x3 bytes = 0.004 MB: within 1 MB, over 0.001 MB
    root = _folder(tmp_path / "imgs", {"a": 10, "b": 10})
    dm = _dm(tmp_path, data_dir, ["data=folder", f"data.root={root}", "data.num_workers=0",
                                  "data.image_size=8", "data.batch_size=1",  # 1: none dropped
                                  f"data.cache_budget_mb={budget_mb}"])  # data.cache: default
    calls = _count_decodes(monkeypatch)
    with caplog.at_level("INFO", logger="imgexp.data.datamodule"):
        for _epoch in range(3):
            for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
                for _batch in loader:
                    pass
    assert set(calls.values()) == {decodes} and len(calls) == len(dm.split_table())
    assert dm.cache_used == used
    assert "data.cache=auto: " + ("caching" if used == "ram" else "not caching") in caplog.text


def test_cache_choice_is_kept_in_run_info(digits_run):
    # the digits at 16 px (1.4 MB decoded) fit the default budget: the run says it cached
    assert json.loads((digits_run / "run_info.json").read_text())["data_cache"] == "ram"


def test_augmentation_is_drawn_from_seed_epoch_and_position_not_workers_or_global_rng(
        tmp_path, data_dir):
    """What lets a resumed run (or one with other data.num_workers) augment as the original:
    each draw's augmentation seed comes from (split_seed, epoch, position in the epoch)."""
    root = _folder(tmp_path / "imgs", {"a": 12, "b": 3})
    common = ["data=folder", f"data.root={root}", "data.image_size=12", "data.batch_size=4",
              "data.ratios=[0.5,0.25,0.25]", "augmentation=geometric", "data.min_per_class=6"]

    def epoch(workers: int, global_seed: int, number: int) -> list[dict]:
        torch.manual_seed(global_seed)
        dm = _dm(tmp_path, data_dir, [*common, f"data.num_workers={workers}"])
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(number)
        return list(loader)

    one = epoch(0, 1, 1)
    for other in (epoch(2, 2, 1), epoch(0, 3, 1)):
        assert all(torch.equal(a["image"], b["image"]) and torch.equal(a["index"], b["index"])
                   for a, b in zip(one, other, strict=True))
    # an image drawn twice in an epoch (class b, oversampled to 6) is augmented twice differently
    images = [(int(i), img) for batch in one for i, img in zip(batch["index"], batch["image"],
                                                                strict=True)]
    repeats = [img for i, img in images if [j for j, _ in images].count(i) > 1]
    assert repeats and len({img.numpy().tobytes() for img in repeats}) == len(repeats)
