"""clustering: time to cluster + select (imgexp-select's defaults: mini-batch k-means above
20k images, k-center picks after PCA to 64) on synthetic float32 features, how it grows with
the number of images (goal: at most ~linear from 50k to 200k), and peak memory; baseline:
scikit-learn's exact KMeans (k-means++) on the smallest size.
"""

import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

import imgexp.select
from imgexp.select.clustering import Clusters, cluster_features, run_kmeans
from imgexp.select.pipeline import choose_counts, pick

K = 20
# the stage's defaults (the select group lives in its package)
SELECT = OmegaConf.load(Path(imgexp.select.__file__).parent / "conf" / "select" / "default.yaml")
# select=large: its own keys over the defaults (its `defaults` list is Hydra's, not a setting)
LARGE = OmegaConf.merge(SELECT, {k: v for k, v in OmegaConf.load(
    Path(imgexp.select.__file__).parent / "conf" / "select" / "large.yaml").items()
    if k != "defaults"})


def synthetic(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """50 groups of unequal sizes (Zipf-like), non-negative like pooled CNN features."""
    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, size=(50, dim)).astype(np.float32)
    weights = 1.0 / np.arange(1, 51)
    groups = rng.choice(50, n, p=weights / weights.sum())
    x = np.empty((n, dim), dtype=np.float32)
    for i in range(0, n, 10_000):
        g = groups[i:i + 10_000]
        noise = rng.standard_normal((len(g), dim), dtype=np.float32)
        x[i:i + 10_000] = np.maximum(centres[g] + 0.5 * noise, 0)
    return x


def select_from(clusters: Clusters, s: DictConfig = SELECT) -> int:
    """The selection after the clustering, as run_select does it with settings `s`."""
    counts = choose_counts(np.bincount(clusters.labels, minlength=len(clusters.centroids)), s)
    return len(pick(clusters, counts, s, 0)[0])


def cluster_and_select(x: np.ndarray, s: DictConfig = SELECT) -> int:
    return select_from(cluster_features(x, K, seed=0, show_progress=False), s)


def timed(fn, repeats: int) -> tuple[float, float]:
    """median seconds, peak traced memory (MiB) of one call."""
    times, peak = [], 0.0
    for _ in range(repeats):
        tracemalloc.start()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    return statistics.median(times), peak


def run(quick: bool = False) -> dict:
    sizes, dim, repeats = ((5_000, 10_000, 20_000), 256, 3) if quick else \
        ((50_000, 100_000, 200_000), 2048, 1)
    out = {"data": f"synthetic float32, {dim} dims, 50 Zipf-sized groups, k={K}, "
                   f"repeats {repeats} (median)"}
    seconds = {}
    for n in sizes:
        x = synthetic(n, dim)
        seconds[n], peak = timed(lambda x=x: cluster_and_select(x), repeats)
        out[f"{n}: cluster+select s"] = round(seconds[n], 2)
        out[f"{n}: peak memory MiB (features {x.nbytes / 2**20:.0f})"] = round(peak)
    growth = seconds[sizes[-1]] / seconds[sizes[0]]
    out[f"time growth {sizes[0]}->{sizes[-1]} (x{sizes[-1] // sizes[0]} data; goal <= ~4)"] = \
        round(growth, 2)
    x = synthetic(sizes[0], dim)
    t_exact, _ = timed(lambda: run_kmeans(x, K, "kmeans"), 1)
    t_ours, _ = timed(lambda: run_kmeans(x, K, "minibatch"), 1)
    out[f"{sizes[0]}: exact KMeans s / mini-batch s"] = f"{t_exact:.2f} / {t_ours:.2f}"
    out[f"{sizes[0]}: speed-up of mini-batch over exact KMeans"] = round(t_exact / t_ours, 2)
    return out


if __name__ == "__main__":
    for key, value in run(quick=False).items():
        print(f"{key}: {value}")
