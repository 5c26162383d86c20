"""Scores of a set of predictions: classification metrics from probabilities, and the CBIR
seed's retrieval mAP (query = test images, gallery = train images, relevant = same class)."""

import numpy as np
import torch
from sklearn import metrics as skm
from torchmetrics.functional.classification import multiclass_calibration_error


def classification_scores(labels: np.ndarray, proba: np.ndarray, top_k=(3, 5),
                          calibration_bins: int = 15) -> dict[str, float]:
    """Flat metric dict (no prefix). `proba` rows are the model's class probabilities."""
    num_classes = proba.shape[1]
    classes = np.arange(num_classes)
    pred = proba.argmax(axis=1)
    scores = {
        "acc": skm.accuracy_score(labels, pred),
        "balanced_acc": skm.balanced_accuracy_score(labels, pred),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(labels, pred, labels=classes,
                                                         average=average, zero_division=0)
        scores |= {f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f}
    for k in top_k:
        if k < num_classes:
            scores[f"top{k}_acc"] = skm.top_k_accuracy_score(labels, proba, k=k, labels=classes)
    # clip: a probability of exactly 0 for the true class would make log-loss infinite
    scores["log_loss"] = skm.log_loss(labels, np.clip(proba, 1e-7, 1.0), labels=classes)
    scores["ece"] = multiclass_calibration_error(
        torch.as_tensor(proba, dtype=torch.float32), torch.as_tensor(labels), num_classes,
        n_bins=calibration_bins, norm="l1").item()
    return {k: float(v) for k, v in scores.items()}


def retrieval_map(query_emb: np.ndarray, query_labels: np.ndarray, gallery_emb: np.ndarray,
                  gallery_labels: np.ndarray, exclude_self: bool = False, chunk: int = 1024
                  ) -> float:
    """Mean over queries of the average precision of the full gallery ranking by cosine
    similarity, a gallery image being relevant when it has the query's class.

    Queries with no relevant gallery image have no defined AP and are left out. This is
    sklearn's label-ranking average precision with the gallery as the "labels", which is
    exactly AP over the full ranking (ties count against the query). exclude_self: the
    queries are the gallery (query i = gallery i), which then is not its own match.
    """
    query_emb, gallery_emb = _unit(query_emb), _unit(gallery_emb)
    total, counted = 0.0, 0
    for start in range(0, len(query_emb), chunk):
        rows = np.arange(start, min(start + chunk, len(query_emb)))
        relevant = query_labels[rows, None] == gallery_labels[None, :]
        similarity = query_emb[rows] @ gallery_emb.T
        if exclude_self:
            relevant[rows - start, rows] = False
            similarity[rows - start, rows] = -2.0  # below any cosine: ranked last
        keep = relevant.any(axis=1)
        if keep.any():
            total += skm.label_ranking_average_precision_score(
                relevant[keep], similarity[keep]) * keep.sum()
            counted += int(keep.sum())
    return float(total / counted) if counted else float("nan")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
