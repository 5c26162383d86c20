"""Likely label errors: out-of-sample class probabilities, then confident learning.

Probabilities come from k nearest neighbours among the images of the *other* folds
(stratified k-fold): an image never votes for its own label, so a mislabelled image is outvoted
by its neighbours instead of remembered (in-sample probabilities find almost nothing). For
large sets, `neighbour_probabilities` takes the k nearest *other* images from one search
(leave-one-out, the near-duplicate index's neighbours): out-of-sample as well, one search
instead of one k-NN fit per fold.

Confident learning (Northcutt, Jiang & Chuang, JAIR 2021), "prune by noise rate": class j's
threshold t_j is the mean probability of j over the images labelled j; an image counts as
confidently of class j when p_j >= t_j (the most probable such j), which fills the confident
joint C[given, true]. Each row of C is calibrated to its class size, and its off-diagonal sum is
how many images of that given class are mislabelled; those many are flagged, the ones whose best
other class beats the given one by the widest margin. Per-class thresholds and calibrated counts
are what make it better than "the argmax disagrees" (benchmarks/bench_audit.py). This is the few
lines the method needs; cleanlab implements it too but is AGPL, which the project's licence
rules keep out of the core.
"""

import warnings

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier


def out_of_sample_probabilities(features: np.ndarray, labels: np.ndarray, n_classes: int,
                                folds: int, k: int, seed: int) -> np.ndarray:
    """(N, n_classes) probabilities, each row from a k-NN fitted on the other folds."""
    probs = np.zeros((len(labels), n_classes))
    folds = max(2, min(folds, int(np.bincount(labels).max())))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # classes smaller than the fold count: sklearn warns only
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(features, labels))
    for train, held_out in splits:
        knn = KNeighborsClassifier(n_neighbors=min(k, len(train)), weights="distance")
        knn.fit(features[train], labels[train])
        probs[np.ix_(held_out, knn.classes_)] = knn.predict_proba(features[held_out])
    return probs


def neighbour_probabilities(neighbours: np.ndarray, sq_distances: np.ndarray,
                            labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, n_classes) distance-weighted votes of each image's neighbours (never itself; -1:
    no neighbour), weighted 1 / distance as the k-fold path's k-NN does."""
    weights = np.where(neighbours >= 0, 1.0 / (np.sqrt(sq_distances) + 1e-6), 0.0)
    probs = np.zeros((len(labels), n_classes))
    rows = np.broadcast_to(np.arange(len(labels))[:, None], neighbours.shape)
    np.add.at(probs, (rows, labels[np.maximum(neighbours, 0)]), weights)
    return probs / np.maximum(probs.sum(1, keepdims=True), 1e-12)


def confident_learning(probs: np.ndarray, labels: np.ndarray
                       ) -> list[tuple[int, int, float]]:
    """(row, suggested class, score) of the likely label errors, most likely first; the score
    is 1 - p(given label)."""
    n, n_classes = probs.shape
    rows = np.arange(n)
    thresholds = np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0
                           for j in range(n_classes)])
    confident = probs >= thresholds[None, :] - 1e-12
    true = np.where(confident, probs, -1.0).argmax(1)
    joint = np.zeros((n_classes, n_classes))
    np.add.at(joint, (labels[confident.any(1)], true[confident.any(1)]), 1)
    sizes = np.bincount(labels, minlength=n_classes)
    joint = joint / np.maximum(joint.sum(1, keepdims=True), 1) * sizes[:, None]
    others = probs.copy()
    others[rows, labels] = -1.0
    suggested = others.argmax(1)
    margin = others[rows, suggested] - probs[rows, labels]
    out = []
    for given in range(n_classes):
        wrong = int(round(joint[given].sum() - joint[given, given]))
        candidates = np.flatnonzero((labels == given) & (margin > 0))
        out += candidates[np.argsort(-margin[candidates], kind="stable")][:wrong].tolist()
    score = 1.0 - probs[rows, labels]
    return sorted(((i, int(suggested[i]), float(score[i])) for i in out), key=lambda t: -t[2])


def disagreements(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The plain rule confident learning is compared with: the argmax is not the label."""
    return np.flatnonzero(probs.argmax(1) != labels)
