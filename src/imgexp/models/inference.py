"""Run a checkpoint over images in batches: the one loop eval, predict and the threshold
helper share, so they cannot disagree on how an image becomes a prediction."""

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from imgexp.progress import progress as progress_bar


@dataclass
class Outputs:
    """Per-image results in loader order; `index` points back into the dataset."""

    index: np.ndarray
    proba: np.ndarray                 # (N, C) from model.predict_proba
    labels: np.ndarray | None = None  # (N,) when the dataset is labelled
    logits: np.ndarray | None = None  # (N, C) head output (classifier heads, for energy)
    embeddings: np.ndarray | None = None  # (N, D) L2-normalised
    skipped: list[str] = field(default_factory=list)


def is_classifier(model) -> bool:
    return getattr(model.head, "kind", "") == "classifier"


@torch.inference_mode()
def run_model(model, loader: DataLoader, *, logits: bool = False, embeddings: bool = False,
              desc: str = "predict", progress: bool = True) -> Outputs:
    """Feed every batch of `loader` ({"image", "index", ["label"], "skipped"}) through `model`."""
    device = model.device  # a LightningModule; a descriptor model has no parameters
    parts: dict[str, list] = {"index": [], "proba": [], "labels": [], "logits": [],
                              "embeddings": []}
    skipped: list[str] = []
    for batch in progress_bar(loader, desc=desc, unit="batch", enabled=progress, leave=False):
        skipped += batch.get("skipped", [])
        if batch["index"].numel() == 0:
            continue
        images = batch["image"].to(device, non_blocking=True)
        parts["index"].append(batch["index"].numpy())
        parts["proba"].append(model.predict_proba(images).float().cpu().numpy())
        if "label" in batch:
            parts["labels"].append(batch["label"].numpy())
        if logits:
            parts["logits"].append(model(images).float().cpu().numpy())
        if embeddings:
            parts["embeddings"].append(model.embed(images).float().cpu().numpy())
    num_classes = len(model.class_names)

    def stack(key: str, width: int | None = None):
        if parts[key]:
            return np.concatenate(parts[key])
        return np.zeros((0, width) if width else 0, dtype=np.float32)

    return Outputs(
        index=stack("index").astype(np.int64), proba=stack("proba", num_classes),
        labels=stack("labels").astype(np.int64) if parts["labels"] else None,
        logits=stack("logits", num_classes) if logits else None,
        embeddings=stack("embeddings", 1) if embeddings else None, skipped=skipped)
