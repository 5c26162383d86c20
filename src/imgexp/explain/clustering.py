"""k-means per layer: choosing k (elbow and silhouette), and how well clusters match classes.

Purity depends on k (more clusters are purer), so the table also gives purity at k = number
of classes: the same k at every depth makes layers comparable.
"""

from dataclasses import dataclass

import matplotlib
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score, silhouette_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from imgexp.atomic import atomic_path
from imgexp.errors import ImgexpError

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SILHOUETTE_SAMPLE = 1000  # silhouette is O(n^2): score a fixed-size sample


@dataclass
class LayerClusters:
    layer: str
    k: int
    labels: np.ndarray        # cluster id per image
    centers: np.ndarray       # in the standardised activation space
    scaler: StandardScaler
    kmeans: KMeans
    curve: dict | None = None  # k -> (inertia, silhouette) when k was chosen automatically

    def assign(self, activations: np.ndarray) -> np.ndarray:
        return self.kmeans.predict(self.scaler.transform(activations))


def purity(clusters: np.ndarray, classes: np.ndarray) -> float:
    """Share of images whose cluster's majority class is their own class."""
    total = 0
    for c in np.unique(clusters):
        total += np.bincount(classes[clusters == c]).max()
    return total / len(classes)


def elbow_k(ks: list[int], inertias: list[float]) -> int:
    """The point of the inertia curve farthest from the chord joining its ends (the knee)."""
    x = np.asarray(ks, float)
    y = np.asarray(inertias, float)
    x_n = (x - x[0]) / (x[-1] - x[0] or 1)
    y_n = (y - y[-1]) / (y[0] - y[-1] or 1)
    distance = np.abs(x_n + y_n - 1) / np.sqrt(2)
    return int(ks[int(np.argmax(distance))])


def _kmeans(x: np.ndarray, k: int, seed: int) -> KMeans:
    # one thread: at these sizes OpenMP start-up and contention cost 10-30x the work
    with threadpool_limits(1):
        return KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)


def _silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float:
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(silhouette_score(x, labels, sample_size=min(SILHOUETTE_SAMPLE, len(x)),
                                  random_state=seed))


def cluster_layer(layer: str, activations: np.ndarray, k, k_max: int, rule: str,
                  seed: int) -> LayerClusters:
    """k-means on standardised activations; k an int or 'auto' (scan 2..k_max with `rule`)."""
    n = len(activations)
    scaler = StandardScaler().fit(activations)
    x = scaler.transform(activations)
    curve = None
    if k == "auto":
        ks = list(range(2, max(3, min(k_max, n - 1)) + 1))
        fits = {kk: _kmeans(x, kk, seed) for kk in ks}
        curve = {kk: (float(f.inertia_), _silhouette(x, f.labels_, seed))
                 for kk, f in fits.items()}
        if rule == "elbow":
            k = elbow_k(ks, [curve[kk][0] for kk in ks])
        else:
            k = max(ks, key=lambda kk: np.nan_to_num(curve[kk][1], nan=-1.0))
        fitted = fits[k]
    else:
        if not isinstance(k, int) or not 2 <= k < n:
            raise ImgexpError(f"explain.k={k!r} for layer {layer}: use an integer in "
                              f"[2, {n - 1}] (fewer than the {n} images) or auto")
        fitted = _kmeans(x, k, seed)
    return LayerClusters(layer, k, fitted.labels_, fitted.cluster_centers_, scaler, fitted,
                         curve)


def k_for(layer: str, setting):
    """explain.k is one value for every layer or a {layer: k} mapping (others: auto)."""
    if isinstance(setting, dict):
        return setting.get(layer, "auto")
    return setting


def layer_scores(result: LayerClusters, activations: np.ndarray, classes: np.ndarray,
                 num_classes: int, seed: int) -> dict:
    x = result.scaler.transform(activations)
    at_classes = _kmeans(x, min(max(2, num_classes), len(x) - 1), seed).labels_
    return {"layer": result.layer, "dim": int(activations.shape[1]), "k": int(result.k),
            "purity": round(purity(result.labels, classes), 4),
            "nmi": round(float(normalized_mutual_info_score(classes, result.labels)), 4),
            "silhouette": round(_silhouette(x, result.labels, seed), 4),
            "purity_at_num_classes": round(purity(at_classes, classes), 4)}


def plot_k_choice(result: LayerClusters, path) -> None:
    """Elbow (inertia) and silhouette against k, the chosen k marked."""
    ks = sorted(result.curve)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(ks, [result.curve[k][0] for k in ks], "o-", color="tab:blue")
    ax.set_xlabel("k")
    ax.set_ylabel("inertia (elbow)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(ks, [result.curve[k][1] for k in ks], "s--", color="tab:orange")
    ax2.set_ylabel("silhouette", color="tab:orange")
    ax.axvline(result.k, color="grey", linestyle=":", label=f"chosen k={result.k}")
    ax.legend(loc="upper center")
    ax.set_title(result.layer)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
