"""Image features for curation: a backbone (or a trained imgexp model) run over image files,
batched, with a per-folder cache so a re-run computes only new or changed images.

Public API (also used by the web app to embed its gallery):
    extractor = FeatureExtractor.from_backbone(cfg.model.backbone, image_size=224)
    extractor = FeatureExtractor.from_checkpoint("RUN/checkpoints/best.ckpt")
    features, stats = extract_features(paths, extractor, cache_dir="cache/features")
"""

import hashlib
import json
import logging
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from imgexp.data.dataset import ImageFiles, collate_skipping
from imgexp.device import resolve_inference
from imgexp.errors import ImgexpError
from imgexp.features.cache import FolderCache, first_precision, hash_files
from imgexp.models.module import IMAGENET_MEAN, IMAGENET_STD
from imgexp.progress import progress as progress_bar

log = logging.getLogger(__name__)
def _file_digest(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


class _Normalized(nn.Module):
    """uint8 NCHW -> ImageNet-normalised float -> pooled backbone features."""

    def __init__(self, backbone: nn.Module, mean, std):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone((images.float() - self.mean) / self.std)


class _CheckpointFeatures(nn.Module):
    def __init__(self, model, mode: str):
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.embed(images) if self.mode == "embed" else self.model.features(images)


class FeatureExtractor:
    """A network from uint8 images to feature vectors, with what makes its output unique.

    `identity` names the backbone (its whole config), the weights, the image size and the
    precision: the cache key, so features of another extractor are never mixed in.
    """

    def __init__(self, network: nn.Module, image_size: int, identity: str,
                 device: str = "auto", precision: str = "auto", channels_last: bool = True,
                 tested_in: str | None = None):
        self.image_size = int(image_size)
        self.requested = precision
        self.inference = resolve_inference(network, device, precision, channels_last,
                                           key="select.precision", tested_in=tested_in)
        self.network = network
        self.base_identity = f"{identity}|size={self.image_size}"

    @property
    def device(self) -> torch.device:
        return self.inference.device

    @property
    def precision(self) -> str:
        return self.inference.precision

    @property
    def identity(self) -> str:
        return f"{self.base_identity}|precision={self.precision}"

    def follow_cache(self, cache_dir: str | Path) -> None:
        """`auto` takes the precision this extractor's features in `cache_dir` were first
        written in (by shards on another machine, say): a run reading them never computes them
        again in its own precision."""
        written = first_precision(Path(cache_dir), self.base_identity, self.precision)
        if self.requested == "auto" and written != self.precision:
            log.info("select.precision=auto: %s, the precision of the features in %s",
                     written, cache_dir)
            self.inference = replace(self.inference, precision=written)

    @classmethod
    def from_backbone(cls, backbone_cfg: DictConfig | dict, image_size: int = 224,
                      mean=IMAGENET_MEAN, std=IMAGENET_STD, seed: int = 0,
                      **kwargs) -> "FeatureExtractor":
        """Any `model/backbone` config (pooled penultimate features)."""
        cfg = OmegaConf.create(backbone_cfg)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        if resolved.get("checkpoint_path"):
            weights = f"file:{_file_digest(resolved['checkpoint_path'])}"
        elif resolved.get("pretrained"):
            weights = "pretrained:hub"
        else:
            # random weights are only reproducible with their seed
            weights = f"random-init:seed={seed}"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            backbone = instantiate(cfg)
        identity = f"backbone={json.dumps(resolved, sort_keys=True)}|weights={weights}"
        return cls(_Normalized(backbone, mean, std), image_size, identity, **kwargs)

    @classmethod
    def from_checkpoint(cls, path: str | Path, mode: str = "embed",
                        **kwargs) -> "FeatureExtractor":
        """A model trained by imgexp-train (`auto` precision: the one its run tested in):
        `embed` (L2-normalised, what the model compares images with) or `features` (raw pooled backbone output)."""
        from imgexp.models import load_model
        from imgexp.models.data_config import input_size
        from imgexp.models.inference import tested_precision

        if mode not in ("embed", "features"):
            raise ImgexpError(f"select.ckpt_features={mode!r} is not an option: embed or features")
        model = load_model(path)
        size = input_size(model)
        identity = f"ckpt={_file_digest(path)}|mode={mode}"
        return cls(_CheckpointFeatures(model, mode), size, identity,
                   tested_in=tested_precision(model), **kwargs)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW (any device) -> float32 (N, D) on the CPU."""
        with torch.inference_mode(), self.inference.autocast():
            out = self.network(self.inference.inputs(images))
        return out.float().flatten(1).cpu()



def _loader(paths: list[Path], extractor: FeatureExtractor, batch_size: int,
            num_workers: int) -> DataLoader:
    return DataLoader(ImageFiles(paths, extractor.image_size), batch_size=batch_size,
                      num_workers=num_workers, collate_fn=collate_skipping,
                      pin_memory=extractor.device.type == "cuda",
                      prefetch_factor=4 if num_workers else None)


def extract_features(paths: list[str | Path], extractor: FeatureExtractor,
                     cache_dir: str | Path | None = None, recompute: bool = False,
                     batch_size: int = 64, num_workers: int = 0, chunk_size: int = 512,
                     export_csv: bool = False, progress: bool = True, compact: bool = True
                     ) -> tuple[np.ndarray, dict]:
    """Features of `paths` in order, as float32 (N, D).

    Unreadable images get a row of NaN and are listed in stats["unreadable"]; stats also says
    how many rows were `computed` and how many came from the `cached` features. compact=False
    leaves the cache's chunks as they are (a shard: other processes write the same folders).
    """
    start = time.perf_counter()
    paths = [Path(p) for p in paths]
    if cache_dir is not None:
        extractor.follow_cache(cache_dir)
    # content hashes key the cache; without one there is nothing to look up
    hashes = hash_files(paths) if cache_dir is not None else [""] * len(paths)
    by_folder: dict[Path, list[int]] = defaultdict(list)
    for i, p in enumerate(paths):
        by_folder[p.parent].append(i)
    rows: dict[int, np.ndarray] = {}
    caches: dict[Path, FolderCache] = {}
    if cache_dir is not None:
        for folder, members in by_folder.items():
            caches[folder] = cache = FolderCache(Path(cache_dir), extractor.identity, folder)
            if recompute:
                cache.clear()
            table = cache.load()
            rows.update((i, table[hashes[i]]) for i in members if hashes[i] in table)
    cached = len(rows)
    todo = [i for i in range(len(paths)) if i not in rows and hashes[i] is not None]
    log.info("features of %d images: %d cached, %d to compute (%s)", len(paths), cached,
             len(todo), extractor.identity)

    # computed rows not yet in a chunk: all are written once they reach chunk_size in total,
    # so a crash loses fewer than chunk_size images (plus the batch in flight)
    pending: dict[Path, list[int]] = defaultdict(list)

    def flush(folder: Path) -> None:
        idx = pending.pop(folder, [])
        if idx and folder in caches:
            caches[folder].append([hashes[i] for i in idx], np.stack([rows[i] for i in idx]))

    if todo:
        bar = progress_bar(total=len(todo), desc="features", unit="img", enabled=progress)
        for batch in _loader([paths[i] for i in todo], extractor, batch_size, num_workers):
            for entry in batch["skipped"]:
                log.warning("skipping unreadable image %s", entry)
            if len(batch["index"]):
                out = extractor(batch["image"]).numpy()
                for j, row in zip(batch["index"].tolist(), out, strict=True):
                    i = todo[j]
                    rows[i] = row
                    pending[paths[i].parent].append(i)
            if sum(map(len, pending.values())) >= chunk_size:
                for folder in list(pending):
                    flush(folder)
            bar.update(len(batch["index"]) + len(batch["skipped"]))
        bar.close()
        for folder in list(pending):
            flush(folder)

    unreadable = [str(p) for i, p in enumerate(paths) if i not in rows]
    dim = next(iter(rows.values())).shape[0] if rows else 0
    features = np.full((len(paths), dim), np.nan, dtype=np.float32)
    for i, row in rows.items():
        features[i] = row
    for folder, cache in caches.items():
        members = [i for i in by_folder[folder] if i in rows]
        if compact:
            cache.compact(hashes[i] for i in members)
        if export_csv and members:
            cache.write_csv([paths[i].name for i in members], [hashes[i] for i in members],
                            features[members])
    seconds = time.perf_counter() - start
    stats = {"total": len(paths), "computed": len(rows) - cached, "cached": cached,
             "unreadable": unreadable, "seconds": round(seconds, 3),
             "identity": extractor.identity, "precision": extractor.precision, "dim": dim}
    return features, stats
