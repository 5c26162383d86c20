"""Top-k classes, the `_unknown` verdict and nearest gallery images for one image."""

from dataclasses import dataclass

import numpy as np
import torch

from imgexp.device import Inference
from imgexp.unknown import verdict


@dataclass(frozen=True)
class Recognition:
    label: str  # the top class, or UNKNOWN when its probability is below the threshold
    confidence: float  # probability of the top class
    top: list[tuple[str, float]]  # (class, probability), most probable first


def to_batch(images: list[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 arrays -> uint8 NCHW tensor (the model normalises internally)."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def recognise(model, pixels: np.ndarray, k: int = 5, unknown_threshold: float = 0.6,
              inference: Inference | None = None) -> Recognition:
    """(in fp32 on the model's device unless `inference` says otherwise)"""
    inference = inference or Inference(model.device)
    with torch.inference_mode(), inference.autocast():
        probabilities = model.predict_proba(inference.inputs(to_batch([pixels])))
    probabilities = probabilities[0].float().cpu().numpy()
    order = np.argsort(-probabilities, kind="stable")[:k]
    top = [(model.class_names[i], float(probabilities[i])) for i in order]
    label = verdict(probabilities, model.class_names, unknown_threshold)
    return Recognition(label, top[0][1], top)


def embed_one(embed, pixels: np.ndarray) -> np.ndarray:
    """What `embed` (uint8 NCHW -> (N, D), e.g. the gallery's FeatureExtractor or model.embed)
    makes of one image."""
    return embed(to_batch([pixels]))[0].float().cpu().numpy()


def nearest(query: np.ndarray, embeddings: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(gallery index, cosine distance) of the k closest gallery vectors, closest first.

    Vectors are L2-normalised, so cosine distance = 1 - dot product.
    """
    if len(embeddings) == 0:
        return []
    distances = 1.0 - embeddings @ query
    order = np.argsort(distances, kind="stable")[:k]
    return [(int(i), float(distances[i])) for i in order]
