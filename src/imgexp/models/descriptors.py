"""Hand-made CBIR descriptors (the CBIR seed's colour, edge, HOG, Gabor and Daisy) as a
backbone: no weights, no training, no download.

Each kind maps a batch of RGB images in [0, 1] (N, H, W, 3) to (N, D) floats; colour, edge
and Gabor run on the whole batch at once (numpy bincount / torch convolutions), HOG and Daisy
call scikit-image per image. `DescriptorBackbone` concatenates the chosen kinds, each block
L2-normalised and scaled by its weight (the seed's "fusion"), so it plugs in wherever a
network backbone does: the k-NN head votes over them, select and the app embed with them.
"""

import contextlib
import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from skimage.color import rgb2hsv, rgb2lab
from skimage.feature import daisy, hog
from skimage.filters import gabor_kernel
from torch import nn

from imgexp.chunks import ChunkStore
from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)

KINDS = ("color", "edge", "hog", "gabor", "daisy")


def _to_unit_range(images: np.ndarray, space: str) -> np.ndarray:
    if space == "rgb":
        return images
    if space == "hsv":
        return rgb2hsv(images)
    if space == "lab":  # L in [0, 100], a and b in about [-128, 127]
        lab = rgb2lab(images)
        return np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 255,
                         (lab[..., 2] + 128) / 255], axis=-1)
    raise ImgexpError(f"model.backbone.color.space={space!r} is not an option: rgb, hsv or lab")


def color_histogram(images: np.ndarray, bins: int = 12, slices: int = 3,
                    space: str = "rgb") -> np.ndarray:
    """Joint histogram of the quantised colour (bins^3 cells) in each of slices x slices
    regions, each region's histogram summing to 1 (the seed's region histogram)."""
    n, h, w, _ = images.shape
    q = np.clip((_to_unit_range(images, space) * bins).astype(np.int64), 0, bins - 1)
    code = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    rows = np.arange(h) * slices // h
    cols = np.arange(w) * slices // w
    region = rows[:, None] * slices + cols[None, :]
    cell = (np.arange(n)[:, None, None] * slices * slices + region) * bins ** 3 + code
    counts = np.bincount(cell.ravel(), minlength=n * slices * slices * bins ** 3)
    hist = counts.reshape(n, slices * slices, bins ** 3).astype(np.float32)
    return (hist / hist.sum(axis=2, keepdims=True)).reshape(n, -1)


# the MPEG-7 edge histogram's 2x2 filters: vertical, horizontal, 45, 135 degrees, isotropic
EDGE_KERNELS = torch.tensor([[[1.0, -1.0], [1.0, -1.0]], [[1.0, 1.0], [-1.0, -1.0]],
                             [[math.sqrt(2), 0.0], [0.0, -math.sqrt(2)]],
                             [[0.0, math.sqrt(2)], [-math.sqrt(2), 0.0]],
                             [[2.0, -2.0], [-2.0, 2.0]]]).unsqueeze(1)


def edge_histogram(gray: torch.Tensor, slices: int = 4) -> np.ndarray:
    """Share of each pixel's strongest edge direction (5 kinds) per slices x slices region."""
    response = nn.functional.conv2d(gray, EDGE_KERNELS).abs()
    strongest = nn.functional.one_hot(response.argmax(1), 5).permute(0, 3, 1, 2).float()
    return nn.functional.adaptive_avg_pool2d(strongest, slices).flatten(1).numpy()


def gabor_bank(frequencies, orientations: int) -> torch.Tensor:
    """(2F·T, 1, k, k) real and imaginary Gabor kernels, zero-padded to one size."""
    kernels = [gabor_kernel(f, theta=np.pi * t / orientations)
               for f in frequencies for t in range(orientations)]
    size = max(k.shape[0] for k in kernels) | 1
    bank = np.zeros((2 * len(kernels), 1, size, size), dtype=np.float32)
    for i, k in enumerate(kernels):
        top, left = (size - k.shape[0]) // 2, (size - k.shape[1]) // 2
        bank[2 * i, 0, top:top + k.shape[0], left:left + k.shape[1]] = k.real
        bank[2 * i + 1, 0, top:top + k.shape[0], left:left + k.shape[1]] = k.imag
    return torch.from_numpy(bank)


def gabor_energy(gray: torch.Tensor, bank: torch.Tensor) -> np.ndarray:
    """Mean and standard deviation of each Gabor filter's response magnitude."""
    out = nn.functional.conv2d(gray, bank, padding=bank.shape[-1] // 2)
    magnitude = out.unflatten(1, (-1, 2)).pow(2).sum(2).sqrt().flatten(2)
    return torch.cat([magnitude.mean(2), magnitude.std(2)], dim=1).numpy()


def hog_features(gray: np.ndarray, orientations: int = 8, pixels_per_cell: int = 8,
                 cells_per_block: int = 2) -> np.ndarray:
    if min(gray.shape[1:]) < pixels_per_cell * cells_per_block:
        raise ImgexpError(f"model.backbone.hog: {gray.shape[1]}px images hold no "
                          f"{cells_per_block}x{cells_per_block} block of {pixels_per_cell}px "
                          "cells: lower model.backbone.hog.pixels_per_cell or raise "
                          "data.image_size")
    return np.stack([hog(g, orientations=orientations, pixels_per_cell=(pixels_per_cell,) * 2,
                         cells_per_block=(cells_per_block,) * 2, feature_vector=True)
                     for g in gray])


def daisy_features(gray: np.ndarray, step: int = 4, radius: int = 8, rings: int = 2,
                   histograms: int = 6, orientations: int = 8) -> np.ndarray:
    """Daisy descriptors on a grid (every `step` px), averaged over the image."""
    if min(gray.shape[1:]) <= 2 * radius:
        raise ImgexpError(f"model.backbone.daisy.radius={radius} needs images over "
                          f"{2 * radius}px: lower it or raise data.image_size")
    return np.stack([daisy(g, step=step, radius=radius, rings=rings, histograms=histograms,
                           orientations=orientations).mean(axis=(0, 1)) for g in gray])


class DescriptorBackbone(nn.Module):
    """The chosen descriptor kinds of each image, fused: every kind's vector L2-normalised
    and multiplied by its weight (`weights`, default 1), then concatenated.

    The module receives normalised batches like any backbone (`mean`/`std` are the model's)
    and undoes the normalisation to get the pixels back. `cache`: descriptors of a batch
    image already seen (same pixels, keyed by their sha256) are reused, so the gallery is
    computed once for validation and test. `cache_dir`: where they are also kept on disk (the
    content-keyed store select's cache uses), so the next run and imgexp-eval describe
    nothing already described with the same settings; only passes without augmentation
    (eval mode) are kept, since an augmented image is never seen twice.
    """

    # numpy and scikit-image in the forward pass: no gradient reaches the pixels, so
    # gradient methods (explain's Grad-CAM) do not apply; perturbation ones (LIME) do
    differentiable = False

    def __init__(self, kinds=("color",), weights=None, color=None, edge=None, hog=None,
                 gabor=None, daisy=None, cache: bool = True, cache_dir: str | None = None,
                 image_size: int = 64, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 checkpoint_path: str | None = None):
        super().__init__()
        if checkpoint_path:  # the key every backbone has; descriptors are computed, not learnt
            raise ImgexpError(f"model.backbone.checkpoint_path={checkpoint_path}: descriptors "
                              "have no weights to load; drop it (or set it to null)")
        self.kinds = list(kinds)
        unknown = [k for k in self.kinds if k not in KINDS]
        if not self.kinds or unknown:
            raise ImgexpError(f"model.backbone.kinds={self.kinds}: choose one or more of {KINDS}")
        weights = dict(weights or {})
        extra = sorted(set(weights) - set(self.kinds))
        if extra:
            raise ImgexpError(f"model.backbone.weights names {extra}, which are not in "
                              f"model.backbone.kinds={self.kinds}: add them there or drop them")
        self.weights = {k: float(weights.get(k, 1.0)) for k in self.kinds}
        self.params = {"color": dict(color or {}), "edge": dict(edge or {}), "hog": dict(hog or {}),
                       "daisy": dict(daisy or {})}
        gabor = dict(gabor or {})
        self.gabor_bank = gabor_bank(gabor.get("frequencies", (0.1, 0.25, 0.4)),
                                     int(gabor.get("orientations", 4)))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.cache: dict[str, torch.Tensor] | None = {} if cache else None
        self.computed = 0  # images whose descriptors were computed (not taken from the cache)
        probe = torch.zeros(1, 3, image_size, image_size)
        self.num_features = self.describe(probe).shape[1]
        # the settings that decide a descriptor, not the pixels: the store's key
        identity = json.dumps({"kinds": self.kinds, "weights": self.weights,
                               "params": self.params, "gabor": gabor}, sort_keys=True,
                              default=list)  # a config list (gabor frequencies)
        key = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.store = ChunkStore(Path(cache_dir) / "descriptors" / key) \
            if cache and cache_dir else None
        self._stored_loaded = False

    def describe(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, D) fused descriptors of (N, 3, H, W) RGB images in [0, 1]."""
        pixels = pixels.detach().float().cpu().clamp(0, 1)
        hwc = pixels.permute(0, 2, 3, 1).numpy()
        gray_t = (pixels * torch.tensor([0.2125, 0.7154, 0.0721]).view(1, 3, 1, 1)).sum(1, True)
        gray = gray_t[:, 0].numpy()
        blocks = []
        for kind in self.kinds:
            p = self.params.get(kind, {})
            if kind == "color":
                block = color_histogram(hwc, int(p.get("bins", 12)), int(p.get("slices", 3)),
                                        p.get("space", "rgb"))
            elif kind == "edge":
                block = edge_histogram(gray_t, int(p.get("slices", 4)))
            elif kind == "gabor":
                block = gabor_energy(gray_t, self.gabor_bank)
            elif kind == "hog":
                block = hog_features(gray, **{k: int(v) for k, v in p.items()})
            else:
                block = daisy_features(gray, **{k: int(v) for k, v in p.items()})
            block = torch.as_tensor(np.asarray(block, dtype=np.float32))
            blocks.append(self.weights[kind] * nn.functional.normalize(block, dim=1))
        self.computed += len(pixels)
        return torch.cat(blocks, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = (x.float() * self.std + self.mean).cpu()
        if self.cache is None:
            return self.describe(pixels).to(x.device)
        self._load_store()
        keys = [hashlib.sha256(p.numpy().tobytes()).hexdigest() for p in pixels]
        todo = [i for i, key in enumerate(keys) if key not in self.cache]
        if todo:
            rows = self.describe(pixels[todo])
            for i, row in zip(todo, rows, strict=True):
                self.cache[keys[i]] = row
            if self.store is not None and not self.training:
                self._keep([keys[i] for i in todo], rows)
        return torch.stack([self.cache[key] for key in keys]).to(x.device)

    def _load_store(self) -> None:
        if self.store is None or self._stored_loaded:
            return
        self._stored_loaded = True
        self.store.compact()
        for key, row in self.store.load().items():
            if len(row) == self.num_features:
                self.cache.setdefault(key, torch.from_numpy(row))

    def _keep(self, keys: list[str], rows: torch.Tensor) -> None:
        try:
            self.store.append(keys, rows.numpy())
        except OSError as exc:  # e.g. a checkpoint's cache_dir from another machine
            log.warning("descriptor cache %s not writable (%s): not kept on disk",
                        self.store.dir, exc)
            self.store = None


@contextlib.contextmanager
def uncached(model: nn.Module):
    """No descriptor cache inside: for passes over perturbed images (explain's LIME), which
    are never seen twice and would only fill it."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, DescriptorBackbone):
        yield
        return
    saved = backbone.cache, backbone.store
    backbone.cache, backbone.store = None, None
    try:
        yield
    finally:
        backbone.cache, backbone.store = saved
