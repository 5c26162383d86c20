"""LightningDataModule over a manifest, a folder of class folders, or the built-in digits."""

import hashlib
import json
import logging
import multiprocessing
from collections import Counter
from numbers import Integral
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from imgexp.data.class_map import map_labels
from imgexp.data.dataset import ImageDataset, SharedImageCache, collate_skipping
from imgexp.data.digits import ensure_digits
from imgexp.data.names import check_class_names
from imgexp.data.samplers import (
    BalancedSampler,
    OversamplingSampler,
    PKBatchSampler,
    SeededDraws,
    ShuffleSampler,
)
from imgexp.data.splits import (
    SPLITS,
    Sample,
    check_classes_readable,
    check_split_ratios,
    complete_layout_split,
    find_split_layout,
    kfold_split,
    log_layout,
    scan_class_folders,
    scan_split_folders,
    stratified_split,
)
from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)
MANIFEST_COLUMNS = ("path", "label", "split")


def read_manifest(manifest: str | Path, root: str | Path | None = None
                  ) -> tuple[Path, list[str], list[Sample]]:
    """manifest.csv (+ sibling manifest.json for root and class order) -> root, classes, samples."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ImgexpError(f"manifest {manifest} not found: set data.manifest= to the "
                          "manifest.csv written by imgexp-prepare")
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ImgexpError(f"manifest {manifest} lacks column(s) {missing}; "
                          f"needs {list(MANIFEST_COLUMNS)}")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise ImgexpError(f"manifest {manifest} has unknown split value(s) {bad}; "
                          f"use {list(SPLITS)}")
    meta_file = manifest.with_suffix(".json")
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    root = Path(root or meta.get("root") or manifest.parent)
    classes = list(meta.get("classes") or sorted(set(df["label"])))
    check_class_names([*classes, *sorted(set(df["label"]) - set(classes))],
                      f"manifest {manifest}")
    samples = [Sample(p, lab, s) for p, lab, s in zip(df["path"], df["label"], df["split"],
                                                      strict=True)]
    return root, classes, samples


# Loader workers are forked: they share the decoded-image cache (an anonymous mapping, which
# cannot be pickled) and start at once. Named, not left to multiprocessing's default: inside a
# joblib (loky) worker that default is loky's own spawn, which pickles the dataset and failed
# every trial of a `hydra/launcher=joblib` sweep (and Python 3.14 makes forkserver the default)
WORKER_START = "fork" if "fork" in multiprocessing.get_all_start_methods() else None


class ImageDataModule(L.LightningDataModule):
    """Labelled images with a train/val/test split; see conf/data/*.yaml for the knobs."""

    def __init__(self, root: str | None = None, manifest: str | None = None,
                 builtin: str | None = None, image_size: int = 64, batch_size: int = 32,
                 num_workers: int = 0, ratios=(0.7, 0.15, 0.15), split_seed: int = 0,
                 cache: str | None = "auto", cache_budget_mb: float = 1024,
                 sampler: str | None = None,
                 samples_per_class: int = 4, min_per_class: int = 0,
                 augmentation=None, pin_memory: bool = False, persistent_workers: bool = True,
                 kfold: int | None = None, fold: int = 0, class_map=None):
        super().__init__()
        if cache not in (None, "none", "ram", "auto"):
            raise ImgexpError(f"data.cache={cache!r} is not an option: use auto, ram or none")
        for key, value, least in (("image_size", image_size, 1), ("batch_size", batch_size, 1),
                                  ("num_workers", num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
                raise ImgexpError(f"data.{key}={value!r} is not a whole number >= {least}")
        check_split_ratios(ratios, "data.ratios")
        if isinstance(cache_budget_mb, bool) or not isinstance(cache_budget_mb, int | float) \
                or not cache_budget_mb >= 0:  # `not >=` also refuses nan
            raise ImgexpError(f"data.cache_budget_mb={cache_budget_mb!r} is not a size: give "
                              "the MB that data.cache=auto may fill (e.g. 1024; 0 never caches)")
        if sampler not in (None, "none", "balanced", "pk"):
            raise ImgexpError(f"data.sampler={sampler!r} is not an option: "
                              "use balanced, pk or none")
        if min_per_class and sampler == "balanced":
            raise ImgexpError("data.min_per_class and data.sampler=balanced both rebalance "
                              "classes: keep one (min_per_class works with pk or none)")
        self.root, self.manifest, self.builtin = root, manifest, builtin
        self.image_size, self.batch_size, self.num_workers = image_size, batch_size, num_workers
        self.ratios, self.split_seed = tuple(ratios), split_seed
        self.cache, self.sampler, self.augmentation = cache, sampler, augmentation
        self.cache_budget_mb = cache_budget_mb
        self.cache_used: str | None = None  # what data.cache resolved to (ram or none)
        self.samples_per_class, self.min_per_class = samples_per_class, min_per_class
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self.kfold, self.fold = kfold, fold
        self.class_map = class_map
        self.classes: list[str] = []
        self.samples: list[Sample] = []
        self.datasets: dict[str, ImageDataset] = {}

    # -- discovery -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.builtin == "digits":
            ensure_digits(self.root)
        elif self.builtin:
            raise ImgexpError(f"data.builtin={self.builtin!r} is unknown: use digits or null")

    # training needs an image of every class; the audit lists unreadable files instead
    require_readable_classes = True

    def resolve(self) -> None:
        """Find classes and the split once; cheap (no decoding), so entry points call it early."""
        if self.samples:
            return
        self.prepare_data()
        if self.manifest:
            root, classes, samples = read_manifest(self.manifest, self.root)
            self.root = str(root)
            if self.class_map:
                label_of = map_labels(classes, self.class_map, "data.class_map")
                samples = [Sample(s.path, label_of.get(s.label, s.label), s.split)
                           for s in samples]
                classes = list(dict.fromkeys(label_of[c] for c in classes))
        else:
            if self.root is None:
                raise ImgexpError("data.root is not set: data.root=/path/to/images "
                                  "(one sub-folder per class) or data=manifest data.manifest=...")
            layout = find_split_layout(self.root)
            if layout:
                log_layout(self.root, layout)
                samples = self._relabel(scan_split_folders(self.root, layout))
                samples = complete_layout_split(samples, layout, self.ratios, self.split_seed)
            else:
                samples = stratified_split(self._relabel(scan_class_folders(self.root)),
                                           self.ratios, self.split_seed)
            classes = check_class_names(sorted({s.label for s in samples}),
                                        f"the class folders of data.root={self.root}")
        if self.kfold:
            samples = kfold_split(samples, self.kfold, self.fold, self.split_seed)
        if self.require_readable_classes:
            check_classes_readable(self.root, samples)
        self.classes, self.samples = classes, samples
        unknown = sorted({s.label for s in samples} - set(classes))
        if unknown:
            raise ImgexpError(f"labels {unknown} are not in the class list {classes}")
        if not any(s.split == "train" for s in samples):
            raise ImgexpError(f"no training images found under {self.root}")

    def _resolve_cache(self) -> str:
        """auto: decoded images in RAM when all splits fit data.cache_budget_mb (decoding is
        then paid once, not every epoch); the choice is logged and kept in run_info.json."""
        if self.cache != "auto":
            return self.cache or "none"
        needed_mb = len(self.samples) * self.image_size ** 2 * 3 / 2 ** 20
        fits = needed_mb <= self.cache_budget_mb
        log.info("data.cache=auto: %s (%.0f MB of decoded images, data.cache_budget_mb=%g)",
                 "caching decoded images in RAM" if fits else "not caching, decoding every epoch",
                 needed_mb, self.cache_budget_mb)
        return "ram" if fits else "none"

    def _relabel(self, samples: list[Sample]) -> list[Sample]:
        """data.class_map applied to the class folders, before the split is drawn."""
        if not self.class_map:
            return samples
        label_of = map_labels(sorted({s.label for s in samples}), self.class_map,
                              "data.class_map")
        return [Sample(s.path, label_of[s.label], s.split) for s in samples]

    def setup(self, stage: str | None = None) -> None:
        self.resolve()
        if self.datasets:
            return
        index = {c: i for i, c in enumerate(self.classes)}
        self.cache_used = self._resolve_cache()
        for split in SPLITS:
            items = [(s.path, index[s.label]) for s in self.samples if s.split == split]
            cache = (SharedImageCache(len(items), self.image_size)
                     if self.cache_used == "ram" and items else None)
            augment = self.augmentation if split == "train" else None
            self.datasets[split] = ImageDataset(self.root, items, self.image_size, augment, cache)

    # -- facts other parts need --------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def train_labels(self) -> np.ndarray:
        self.setup()
        return np.asarray(self.datasets["train"].labels, dtype=np.int64)

    def split_table(self) -> pd.DataFrame:
        self.resolve()
        return pd.DataFrame([(s.path, s.label, s.split) for s in self.samples],
                            columns=list(MANIFEST_COLUMNS))

    def manifest_hash(self) -> str:
        """sha256 of the (path, label, split) table: equal hash = same data split."""
        table = self.split_table().to_csv(index=False).encode()
        return hashlib.sha256(table).hexdigest()

    def describe(self) -> dict:
        self.resolve()
        return {split: dict(Counter(s.label for s in self.samples if s.split == split))
                for split in SPLITS}

    # -- loaders -----------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool = False, sampler=None, batch_sampler=None,
                dataset=None) -> DataLoader:
        self.setup()
        dataset = dataset if dataset is not None else self.datasets[split]
        common = dict(num_workers=self.num_workers, worker_init_fn=pl_worker_init_function,
                      collate_fn=collate_skipping, pin_memory=self.pin_memory,
                      persistent_workers=self.persistent_workers and self.num_workers > 0,
                      multiprocessing_context=WORKER_START if self.num_workers else None)
        # stateful: Lightning saves how far into the epoch it is, so a mid-epoch checkpoint
        # resumes with the batches that were left (a plain DataLoader restarts the epoch)
        if batch_sampler is not None:
            return StatefulDataLoader(dataset, batch_sampler=batch_sampler, **common)
        return StatefulDataLoader(dataset, batch_size=self.batch_size,
                                  shuffle=shuffle and sampler is None, sampler=sampler,
                                  drop_last=shuffle and len(dataset) > self.batch_size, **common)

    def train_sampler(self) -> SeededDraws:
        """The train split's sampler (or batch sampler for pk), seeded by split_seed and the
        epoch, so a resumed run draws the batches an uninterrupted one would, each draw with
        the seed of its augmentation."""
        sampler = self._train_order()
        return SeededDraws(sampler, self.split_seed, batches=isinstance(sampler, PKBatchSampler))

    def _train_order(self):
        labels = self.train_labels()
        if self.sampler == "pk":
            return PKBatchSampler(labels, self.batch_size, self.samples_per_class,
                                  self.min_per_class, seed=self.split_seed)
        if self.min_per_class:
            return OversamplingSampler(labels, self.min_per_class, seed=self.split_seed)
        if self.sampler == "balanced":
            return BalancedSampler(labels, seed=self.split_seed)
        return ShuffleSampler(self.datasets["train"], seed=self.split_seed)

    def train_dataloader(self) -> DataLoader:
        sampler = self.train_sampler()
        if sampler.batches:
            self._check_pk_under_ddp()
            return self._loader("train", batch_sampler=sampler)
        return self._loader("train", shuffle=True, sampler=sampler)

    def _check_pk_under_ddp(self) -> None:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1 and \
                trainer._accelerator_connector.use_distributed_sampler:
            raise ImgexpError("data.sampler=pk shards its batches over the ranks itself: "
                              "add trainer.use_distributed_sampler=false")

    def gallery_dataloader(self) -> DataLoader:
        """The train split without augmentation, in order: the reference set of k-NN."""
        self.setup()
        train = self.datasets["train"]
        return self._loader("train", dataset=ImageDataset(train.root, train.items,
                                                          train.image_size, None, train.cache))

    def _eval_sampler(self, split: str) -> DistributedSampler | None:
        """Under DDP with data.sampler=pk Lightning leaves the loaders alone (the P x K sampler
        shards itself): val/test are sharded here, and the module gathers the embeddings."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size <= 1 or \
                trainer._accelerator_connector.use_distributed_sampler:
            return None
        self.setup()
        return DistributedSampler(self.datasets[split], num_replicas=trainer.world_size,
                                  rank=trainer.global_rank, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", sampler=self._eval_sampler("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", sampler=self._eval_sampler("test"))

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
