"""Dataset of labelled image files: decode, resize, optional RAM cache, augment.

Samples are uint8 CHW tensors: normalisation happens inside the model (on the device), so
the checkpoint carries it and worker->main transfers are 4x smaller than float.
"""

import mmap
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from imgexp.data.image_io import UnreadableImage, load_rgb


class SharedImageCache:
    """Decoded, resized images shared by the main process and its forked DataLoader workers.

    An anonymous shared mapping (not /dev/shm, which is often tiny in containers) created
    before the workers fork: a worker's write is seen by all, so the second epoch decodes
    nothing whatever worker got which index.
    """

    def __init__(self, n: int, size: int):
        self.shape = (n, size, size, 3)
        self._buf = mmap.mmap(-1, n * size * size * 3 + n)
        self.images = np.frombuffer(self._buf, dtype=np.uint8, count=n * size * size * 3
                                    ).reshape(self.shape)
        self.filled = np.frombuffer(self._buf, dtype=np.uint8, count=n,
                                    offset=n * size * size * 3)

    def get(self, i: int) -> np.ndarray | None:
        return self.images[i] if self.filled[i] else None

    def put(self, i: int, img: np.ndarray) -> None:
        self.images[i] = img
        self.filled[i] = 1


class ImageDataset(Dataset):
    def __init__(self, root: str | Path, items: list[tuple[str, int]], image_size: int,
                 augment=None, cache: SharedImageCache | None = None):
        self.root = Path(root)
        self.items = items
        self.image_size = image_size
        self.augment = augment
        self.cache = cache

    def __len__(self) -> int:
        return len(self.items)

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]

    def load(self, i: int) -> np.ndarray:
        img = self.cache.get(i) if self.cache is not None else None
        if img is None:
            img = load_rgb(self.root / self.items[i][0], self.image_size)
            if self.cache is not None:
                self.cache.put(i, img)
        return img

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """key: an index, or (index, augmentation seed) from samplers.SeededDraws."""
        i, seed = key if isinstance(key, tuple) else (key, None)
        path, label = self.items[i]
        try:
            img = self.load(i)
        except UnreadableImage as exc:
            # reported once per file by the LightningModule (main process), not per worker
            return {"skipped": f"{self.root / path}: {exc}"}
        if self.augment is not None:
            if seed is not None:  # albumentations 2 draws from its own generators only
                self.augment.set_random_state(np.random.default_rng(seed), random.Random(seed))
            img = self.augment(image=img)["image"]
        image = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return {"image": image, "label": label, "index": i}


class ImageFiles(Dataset):
    """Unlabelled image files (select, predict); an unreadable one becomes a `skipped` entry."""

    def __init__(self, paths: list[Path], image_size: int):
        self.paths, self.image_size = paths, image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        try:
            img = load_rgb(self.paths[i], self.image_size)
        except UnreadableImage as exc:
            return {"skipped": f"{self.paths[i]}: {exc}"}
        return {"image": torch.from_numpy(img).permute(2, 0, 1), "index": i}


def collate_skipping(batch: list[dict]) -> dict:
    """Default collate over the readable samples; unreadable ones are listed in `skipped`."""
    skipped = [b["skipped"] for b in batch if "skipped" in b]
    good = [b for b in batch if "skipped" not in b]
    out = default_collate(good) if good else {
        "image": torch.empty(0, 3, 0, 0, dtype=torch.uint8),
        "label": torch.empty(0, dtype=torch.long), "index": torch.empty(0, dtype=torch.long)}
    out["skipped"] = skipped
    return out
