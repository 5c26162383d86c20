"""Doubt on classes the model never saw: are its confidences on them lower than on known ones?"""

from pathlib import Path

import matplotlib
import numpy as np
from sklearn.metrics import roc_auc_score

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from imgexp.atomic import atomic_path  # noqa: E402


def confidence_separation(known: np.ndarray, unseen: np.ndarray) -> dict:
    """AUROC of "max probability" telling known-class images from unseen-class ones
    (0.5: the confidence says nothing; 1.0: every unseen image is less confident)."""
    y = np.r_[np.ones(len(known)), np.zeros(len(unseen))]
    return {"known_mean_confidence": round(float(known.mean()), 4),
            "unseen_mean_confidence": round(float(unseen.mean()), 4),
            "auroc_confidence": round(float(roc_auc_score(y, np.r_[known, unseen])), 4)}


def plot_confidence(known: np.ndarray, unseen: np.ndarray, split: str, path: Path) -> None:
    bins = np.linspace(0, 1, 21)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(known, bins=bins, alpha=0.6, density=True, label=f"{split} images (known classes)")
    ax.hist(unseen, bins=bins, alpha=0.6, density=True, label="unseen class (OOD)")
    ax.set_xlabel("confidence (max class probability)")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
