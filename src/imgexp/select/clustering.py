"""k-means over image features: scikit-learn (exact below a size, mini-batch above), faiss on
request, optional PCA first, and k picked by silhouette when asked.

Measured on 100k x 2048 (issue 5): KMeans with k-means++ 103 s (58 s of it the init),
MiniBatchKMeans 5.3 s at +1.2% inertia, faiss 2.3 s; hence the automatic switch.
"""

import logging
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.metrics import pairwise_distances, silhouette_score

from imgexp.errors import ImgexpError
from imgexp.progress import progress

log = logging.getLogger(__name__)
METHODS = ("auto", "kmeans", "minibatch", "faiss")
ROWS_PER_STEP = 16_384  # rows transformed or assigned at a time (a multiple of 256, see assign)


@dataclass
class Clusters:
    labels: np.ndarray          # (N,) int cluster of each point
    centroids: np.ndarray       # (k, D) in the clustering space
    distances: np.ndarray       # (N,) Euclidean distance to its own centroid
    space: np.ndarray           # (N, D) the points as clustered (after PCA when asked)
    info: dict = field(default_factory=dict)


def fit_pca(features: np.ndarray, dim: int, seed: int, max_fit: int = 50_000) -> PCA:
    """PCA fitted on at most max_fit rows: the principal axes settle long before that."""
    if not 0 < dim < features.shape[1]:
        raise ImgexpError(f"select.pca_dim={dim} must be between 1 and the feature size "
                          f"{features.shape[1] - 1}, or null for no PCA")
    rng = np.random.default_rng(seed)
    sample = features if len(features) <= max_fit else features[
        np.sort(rng.choice(len(features), max_fit, replace=False))]
    return PCA(dim, svd_solver="randomized", random_state=seed).fit(sample)


def project(pca: PCA, features: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """The rows (default: all) projected, a step at a time: no full-width copy of them."""
    n = len(features) if rows is None else len(rows)
    out = np.empty((n, pca.n_components_), dtype=np.float32)
    for i in range(0, n, ROWS_PER_STEP):
        step = slice(i, i + ROWS_PER_STEP)
        out[step] = pca.transform(features[step] if rows is None else features[rows[step]])
    return out


def _faiss_kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its AVX2 fallback note
    try:
        import faiss
    except ImportError:
        raise ImgexpError("select.method=faiss but faiss is not installed: pip install "
                          "faiss-cpu (or faiss-gpu), or use select.method=auto") from None
    x = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=25, seed=seed, verbose=False)
    km.train(x)
    # faiss trains on a subsample (256 points per centroid): assign every point afterwards
    _, labels = km.index.search(x, 1)
    return labels.ravel().astype(np.int64), km.centroids


def run_kmeans(x: np.ndarray, k: int, method: str = "auto", minibatch_above: int = 20_000,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """-> labels, centroids, the method used."""
    if method not in METHODS:
        raise ImgexpError(f"select.method={method!r} is not an option: use one of {METHODS}")
    if not 1 <= k <= len(x):
        raise ImgexpError(f"select.n_clusters={k} must be between 1 and the number of "
                          f"images ({len(x)})")
    if method == "auto":
        method = "minibatch" if len(x) > minibatch_above else "kmeans"
    if method == "faiss":
        labels, centroids = _faiss_kmeans(x, k, seed)
        return labels, centroids, method
    if method == "minibatch":
        # labels by assign(), not by fit: its chunks keep the pass's memory bounded
        model = MiniBatchKMeans(k, random_state=seed, batch_size=4096, n_init=3,
                                max_no_improvement=20, compute_labels=False).fit(x)
        return assign(model, x), model.cluster_centers_.astype(np.float32), method
    model = KMeans(k, random_state=seed, n_init="auto")
    labels = model.fit_predict(x)
    return labels.astype(np.int64), model.cluster_centers_.astype(np.float32), method


def assign(model: MiniBatchKMeans, x: np.ndarray) -> np.ndarray:
    """Each row's nearest centroid, ROWS_PER_STEP rows at a time: no temporary grows with N
    but the labels. scikit-learn assigns in blocks of 256 rows whatever it is given, so whole
    blocks per step give the very labels of one call over all rows."""
    labels = np.empty(len(x), dtype=np.int64)
    for i in range(0, len(x), ROWS_PER_STEP):
        labels[i:i + ROWS_PER_STEP] = model.predict(x[i:i + ROWS_PER_STEP])
    return labels


def distances_to_centroids(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray
                           ) -> np.ndarray:
    out = np.empty(len(x), dtype=np.float32)
    for i in range(0, len(x), ROWS_PER_STEP):
        part = x[i:i + ROWS_PER_STEP] - centroids[labels[i:i + ROWS_PER_STEP]]
        out[i:i + ROWS_PER_STEP] = np.sqrt(np.einsum("ij,ij->i", part, part))
    return out


def choose_k(x: np.ndarray, candidates: list[int], method: str, minibatch_above: int,
             seed: int, max_sample: int = 10_000, show_progress: bool = True
             ) -> tuple[int, list[dict]]:
    """k with the best silhouette on a sample (silhouette is O(n^2)); the table for the plot."""
    rng = np.random.default_rng(seed)
    sample = x if len(x) <= max_sample else x[rng.choice(len(x), max_sample, replace=False)]
    candidates = [k for k in candidates if 2 <= k < len(sample)]
    if not candidates:
        raise ImgexpError(f"select.auto_k has no usable k for {len(sample)} images: "
                          "give a range with 2 <= k < the number of images")
    table = []
    for k in progress(candidates, desc="choosing k", unit="k", enabled=show_progress):
        labels, centroids, _ = run_kmeans(sample, k, method, minibatch_above, seed)
        inertia = float(np.square(distances_to_centroids(sample, labels, centroids)).sum())
        score = float(silhouette_score(sample, labels, random_state=seed))
        table.append({"k": k, "silhouette": score, "inertia": inertia})
        log.info("k=%d: silhouette %.4f, inertia %.4g", k, score, inertia)
    best = max(table, key=lambda row: row["silhouette"])["k"]
    return best, table


def diagnostics(labels: np.ndarray, centroids: np.ndarray, distances: np.ndarray) -> dict:
    """Spread within each cluster and how far apart the centroids are."""
    k = len(centroids)
    spread = [float(distances[labels == c].mean()) if np.any(labels == c) else None
              for c in range(k)]
    gaps = pairwise_distances(centroids)
    np.fill_diagonal(gaps, np.inf)
    nearest = gaps.min(1) if k > 1 else np.full(k, np.nan)
    upper = gaps[np.triu_indices(k, 1)]
    return {"spread": spread,
            "nearest_centroid_distance": [None if not np.isfinite(v) else float(v)
                                          for v in nearest],
            "centroid_distance": {"min": float(upper.min()) if k > 1 else None,
                                  "mean": float(upper.mean()) if k > 1 else None,
                                  "max": float(upper.max()) if k > 1 else None}}


def cluster_features(features: np.ndarray, n_clusters: int | str = 20, method: str = "auto",
                     minibatch_above: int = 20_000, pca_dim: int | None = None,
                     auto_k: list[int] | None = None, seed: int = 0,
                     show_progress: bool = True) -> Clusters:
    steps = progress(total=4, desc="clustering", unit="step", enabled=show_progress)
    info: dict = {"pca_dim": pca_dim}
    space = features
    if pca_dim:
        pca = fit_pca(features, pca_dim, seed)
        space = project(pca, features)
        info["pca_explained_variance"] = float(pca.explained_variance_ratio_.sum())
    steps.update()
    if n_clusters == "auto":
        n_clusters, info["k_table"] = choose_k(space, list(auto_k or range(2, 31, 2)), method,
                                               minibatch_above, seed, show_progress=show_progress)
        log.info("n_clusters=auto: picked k=%d (best silhouette)", n_clusters)
    elif not isinstance(n_clusters, int):
        raise ImgexpError(f"select.n_clusters={n_clusters!r}: give a whole number or auto")
    steps.update()
    labels, centroids, used = run_kmeans(space, n_clusters, method, minibatch_above, seed)
    distances = distances_to_centroids(space, labels, centroids)
    steps.update()
    info.update(method=used, n_clusters=int(n_clusters),
                inertia=float(np.square(distances, dtype=np.float64).sum()),
                **diagnostics(labels, centroids, distances))
    steps.update()
    steps.close()
    return Clusters(labels, centroids, distances, space, info)
