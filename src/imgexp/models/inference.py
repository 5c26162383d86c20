"""Run a checkpoint over images in batches: the one loop eval, predict and the threshold
helper share, so they cannot disagree on how an image becomes a prediction."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from imgexp.device import PRECISIONS, Inference, resolve_inference, trainer_precision
from imgexp.errors import ImgexpError
from imgexp.progress import progress as progress_bar

log = logging.getLogger(__name__)


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


def load_for_inference(path: str | Path, device: str, settings) -> tuple[object, Inference]:
    """A checkpoint as a model on the resolved device and precision, or a file imgexp-export
    wrote (.onnx) run by onnxruntime on the CPU in fp32, the precision it was checked in."""
    if Path(path).suffix.lower() == ".onnx":
        from imgexp.models.onnx_model import OnnxClassifier

        precision = settings["precision"]
        if precision not in PRECISIONS:
            raise ImgexpError(f"inference.precision={precision!r} is not an option: use "
                              f"{PRECISIONS}")
        if precision == "bf16":
            log.warning("inference.precision=bf16 does not apply to %s: an .onnx model runs "
                        "in fp32 (the precision its export was checked in)", path)
        return OnnxClassifier(path), Inference(torch.device("cpu"))
    from imgexp.models.factory import load_model

    model = load_model(path)
    return model, inference_for(model, device, settings)


def inference_for(model, device: str, settings) -> Inference:
    """The stage's `device` and `inference` config ({precision, channels_last}) resolved for
    this checkpoint's model (moved to the device, in place): `auto` is the precision the
    run's own test computed in, so every stage gives the scores the run reported."""
    return resolve_inference(model, device, settings["precision"], settings["channels_last"],
                             tested_in=tested_precision(model))


def tested_precision(model) -> str | None:
    """The precision the run's test computed in: its trainer.precision, in the checkpoint."""
    precision = (model.config.get("trainer") or {}).get("precision")
    return None if precision is None else trainer_precision(precision)


@torch.inference_mode()
def run_model(model, loader: DataLoader, *, logits: bool = False, embeddings: bool = False,
              desc: str = "predict", progress: bool = True,
              inference: Inference | None = None) -> Outputs:
    """Feed every batch of `loader` ({"image", "index", ["label"], "skipped"}) through `model`
    (in fp32 on its own device unless `inference` says otherwise)."""
    # model.device (a LightningModule's): a descriptor model has no parameters to ask
    inference = inference or Inference(model.device)
    parts: dict[str, list] = {"index": [], "proba": [], "labels": [], "logits": [],
                              "embeddings": []}
    skipped: list[str] = []
    for batch in progress_bar(loader, desc=desc, unit="batch", enabled=progress, leave=False):
        skipped += batch.get("skipped", [])
        if batch["index"].numel() == 0:
            continue
        images = inference.inputs(batch["image"])
        parts["index"].append(batch["index"].numpy())
        if "label" in batch:
            parts["labels"].append(batch["label"].numpy())
        with inference.autocast():
            parts["proba"].append(model.predict_proba(images).float().cpu().numpy())
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
