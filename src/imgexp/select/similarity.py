"""The seed's dataset similarity score: how alike the images of a set are, 0 = unrelated.

Mean cosine similarity of random image pairs, on features centred on the whole collection's
mean (raw CNN features are all positive, so their cosines sit near 1 whatever the images)
and L2-normalised; repeated over several random draws to give a mean and a spread.
"""

import numpy as np


def similarity_score(features: np.ndarray, center: np.ndarray | None = None,
                     n_experiments: int = 100, pairs_per_experiment: int = 1000,
                     seed: int = 0) -> dict:
    """{mean, std, n_experiments} of the per-experiment mean pair cosine.

    `center`: the mean to subtract; pass the whole collection's mean when scoring a subset so
    both scores are measured from the same origin.
    """
    n = len(features)
    if n < 2 or n_experiments < 1:
        return {"mean": None, "std": None, "n_experiments": 0}
    center = features.mean(0) if center is None else center
    rng = np.random.default_rng(seed)
    scores = np.empty(n_experiments)
    for e in range(n_experiments):
        i = rng.integers(0, n, pairs_per_experiment)
        j = (i + rng.integers(1, n, pairs_per_experiment)) % n  # j != i
        a = _unit(features[i] - center)
        b = _unit(features[j] - center)
        scores[e] = np.einsum("ij,ij->i", a, b).mean()
    return {"mean": float(scores.mean()), "std": float(scores.std()),
            "n_experiments": int(n_experiments)}


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def redundancy_score(features: np.ndarray, center: np.ndarray, sample_size: int,
                     n_experiments: int = 100, seed: int = 0) -> dict:
    """{mean, std, n_experiments, sample_size} of the mean nearest-neighbour cosine inside
    random samples of `sample_size` images: how close each image's closest look-alike is.

    The pair score above barely moves when a subset keeps the collection's structure (centred
    on the collection's mean, the whole collection sits near 0 by construction); this one
    falls when near-duplicates are dropped. Samples of the same size for every set compared,
    since more images means closer neighbours.
    """
    n = len(features)
    if n < 2 or sample_size < 2 or n_experiments < 1:
        return {"mean": None, "std": None, "n_experiments": 0, "sample_size": 0}
    m = min(sample_size, n)
    rng = np.random.default_rng(seed)
    scores = np.empty(n_experiments)
    for e in range(n_experiments):
        u = _unit(features[rng.choice(n, m, replace=False)] - center)
        cos = u @ u.T
        np.fill_diagonal(cos, -np.inf)
        scores[e] = cos.max(1).mean()
    return {"mean": float(scores.mean()), "std": float(scores.std()),
            "n_experiments": int(n_experiments), "sample_size": int(m)}
