"""The images to explain: the checkpoint's own data split (or the user's data overrides),
a stratified sample of at most `max_images`, and optional out-of-distribution images."""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgexp.data import ImageDataModule, UnreadableImage, load_rgb
from imgexp.data.splits import SPLITS, image_files
from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """uint8 NHWC images with their source paths and class indices (-1: unknown class)."""

    images: np.ndarray
    paths: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            chunk = self.images[start:start + batch_size]
            yield torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2)


def stratified_sample(labels: np.ndarray, max_images: int | None, seed: int) -> np.ndarray:
    """Indices of at most max_images items keeping each class's share (at least one each)."""
    n = len(labels)
    if not max_images or n <= max_images:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts * max_images / n)).astype(int)
    picked = [rng.choice(np.flatnonzero(labels == c), size=min(q, cnt), replace=False)
              for c, q, cnt in zip(classes, quota, counts, strict=True)]
    return np.sort(np.concatenate(picked))[:max_images]


def decode_images(paths: list[Path], size: int) -> tuple[np.ndarray, list[int]]:
    images, kept = [], []
    for i, path in enumerate(paths):
        try:
            images.append(load_rgb(path, size))
            kept.append(i)
        except UnreadableImage as exc:
            log.warning("skipping unreadable image %s: %s", path, exc)
    stack = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return stack, kept


def load_split(datamodule: ImageDataModule, split: str, max_images: int | None, seed: int
               ) -> tuple[ImageSet, list[str]]:
    """Decode the (sampled) images of one split; returns them and the dataset's classes."""
    if split not in SPLITS:
        raise ImgexpError(f"split={split!r} is not a split: use one of {list(SPLITS)}")
    datamodule.resolve()
    samples = [s for s in datamodule.samples if s.split == split]
    if not samples:
        raise ImgexpError(f"the {split} split of {datamodule.root} is empty: pick another "
                          "with split=train|val|test")
    index = {c: i for i, c in enumerate(datamodule.classes)}
    labels = np.array([index[s.label] for s in samples])
    chosen = stratified_sample(labels, max_images, seed)
    root = Path(datamodule.root)
    paths = [root / samples[i].path for i in chosen]
    images, kept = decode_images(paths, datamodule.image_size)
    image_set = ImageSet(images, [str(paths[i]) for i in kept], labels[chosen][kept])
    return image_set, datamodule.classes


def load_folder(folder: str | Path, size: int, max_images: int | None, seed: int) -> ImageSet:
    """Every image under `folder` (recursively): images of classes the model never saw."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImgexpError(f"explain.ood_dir={folder} is not a folder: point it at images of a "
                          "class the model was not trained on, or set explain.ood_dir=null")
    paths = image_files(folder)
    if not paths:
        raise ImgexpError(f"explain.ood_dir={folder} holds no image files")
    if max_images and len(paths) > max_images:
        keep = np.random.default_rng(seed).choice(len(paths), max_images, replace=False)
        paths = [paths[i] for i in sorted(keep)]
    images, kept = decode_images(paths, size)
    if not kept:
        raise ImgexpError(f"explain.ood_dir={folder}: none of its {len(paths)} image files "
                          "could be decoded")
    return ImageSet(images, [str(paths[i]) for i in kept], np.full(len(kept), -1))
