"""Similarity of two images and the "same class?" threshold, chosen on the validation split.

The threshold is the cosine similarity that best separates same-class from different-class
pairs of validation images. Pairs are mostly "different" (9 in 10 with 10 balanced classes),
so plain accuracy would reward answering "different" every time: the threshold maximises the
balanced accuracy (mean of the same-pair and different-pair hit rates) instead.
"""

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from imgexp.app.gallery import embed_files
from imgexp.atomic import write_json_atomic
from imgexp.errors import ImgexpError
from imgexp.features.cache import short_key
from imgexp.features.extractor import FeatureExtractor
from imgexp.models.data_config import checkpoint_datamodule

log = logging.getLogger(__name__)
MAX_VAL_IMAGES = 2000  # 2M pairs at most


@dataclass(frozen=True)
class Threshold:
    value: float
    balanced_accuracy: float  # on the pairs it was chosen on
    pairs: int
    source: str  # "val split", "gallery" or "config"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def pair_similarities(embeddings: np.ndarray, labels: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and same-label flag of every unordered pair (i < j)."""
    unit = embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-12)
    i, j = np.triu_indices(len(unit), k=1)
    sims = np.einsum("nd,nd->n", unit[i], unit[j])
    return sims, labels[i] == labels[j]


def best_threshold(sims: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy) of the rule "same class iff similarity >= threshold"."""
    n_same, n_diff = int(same.sum()), int((~same).sum())
    if n_same == 0 or n_diff == 0:
        raise ImgexpError("choosing a compare threshold needs pairs of the same and of different "
                          "classes: the images used have only one kind")
    order = np.argsort(-sims, kind="stable")
    sims_sorted, same_sorted = sims[order], same[order]
    # cutting after position k calls the k+1 most similar pairs "same"
    same_hits = np.cumsum(same_sorted)
    diff_hits = n_diff - np.cumsum(~same_sorted)
    balanced = (same_hits / n_same + diff_hits / n_diff) / 2
    # only cut between distinct similarity values
    valid = np.r_[sims_sorted[1:] < sims_sorted[:-1], True]
    k = int(np.argmax(np.where(valid, balanced, -1.0)))
    below = sims_sorted[k + 1] if k + 1 < len(sims_sorted) else sims_sorted[k] - 1e-6
    return float((sims_sorted[k] + below) / 2), float(balanced[k])


def threshold_from(embeddings: np.ndarray, labels: list[str], source: str) -> Threshold:
    sims, same = pair_similarities(embeddings, np.asarray(labels))
    value, acc = best_threshold(sims, same)
    return Threshold(value, acc, len(sims), source)


def validation_images(model) -> tuple[list[Path], list[str], str]:
    """Files and labels of the checkpoint's validation split, and the split's hash."""
    datamodule = checkpoint_datamodule(model)
    datamodule.resolve()
    val = [s for s in datamodule.samples if s.split == "val"]
    if len(val) > MAX_VAL_IMAGES:  # an even, deterministic subsample
        val = [val[i] for i in np.linspace(0, len(val) - 1, MAX_VAL_IMAGES).astype(int)]
    root = Path(datamodule.root)
    return [root / s.path for s in val], [s.label for s in val], datamodule.manifest_hash()


def calibrate_on_val(model, extractor: FeatureExtractor, cache_dir: str | Path) -> Threshold:
    """The threshold on the checkpoint's own validation split, with the embeddings the app
    compares images with; cached per extractor (checkpoint) + split."""
    files, labels, split_hash = validation_images(model)
    if not files:
        raise ImgexpError("the checkpoint's data has no validation images to choose the compare "
                          "threshold on: set compare_threshold=")
    cache_file = (Path(cache_dir) / "compare-thresholds"
                  / f"{short_key(extractor.identity)}-{split_hash[:16]}.json")
    if cache_file.is_file():
        return Threshold(**json.loads(cache_file.read_text()))
    vectors, kept, stats = embed_files(files, extractor, cache_dir)
    if stats["unreadable"]:
        log.warning("compare threshold: %d unreadable validation image(s) left out",
                    len(stats["unreadable"]))
    threshold = threshold_from(vectors, [labels[i] for i in kept], "val split")
    write_json_atomic(cache_file, asdict(threshold))
    return threshold
