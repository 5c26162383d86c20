"""embedding_eval: k-NN + MAP@R over N x 128 synthetic embeddings, leave-one-out.

imgexp's chunked evaluation (`imgexp.metrics.retrieval_metrics`) against scikit-learn's
`NearestNeighbors(algorithm="brute")` neighbours scored by the same rule
(`neighbour_metrics`): same figures, time ratio (sklearn / imgexp, median of repeats) and
peak resident memory of each next to the N x N float32 matrix a naive evaluation builds.

    python -m benchmarks.bench_embedding_eval          # 50k x 128
    python -m benchmarks.bench_embedding_eval --quick  # 10k x 128
"""

import argparse
import json
import statistics
import threading
import time

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

from imgexp.metrics.retrieval import neighbour_metrics, retrieval_metrics

DIM, NUM_CLASSES, VOTE_K = 128, 100, 5


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy class clusters on the unit sphere (unequal class sizes, like real data)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(NUM_CLASSES, DIM))
    labels = rng.choice(NUM_CLASSES, size=n, p=rng.dirichlet(np.full(NUM_CLASSES, 20.0)))
    x = centres[labels] + rng.normal(scale=1.4, size=(n, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every millisecond."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.extra = self.peak - self.base


def imgexp_eval(x, labels) -> dict:
    return retrieval_metrics(x, labels, x, labels, exclude_self=True, vote_k=VOTE_K)


def sklearn_eval(x, labels) -> dict:
    k = int(np.bincount(labels).max()) - 1  # every query sees all of its relevant items
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x)
    distances, indices = nn.kneighbors()  # no X: each point's neighbours exclude itself
    labels_t = torch.as_tensor(labels)
    weights = 1.0 / (torch.as_tensor(distances, dtype=torch.float32) + 1e-6)
    relevant = torch.bincount(labels_t)[labels_t] - 1
    figures = neighbour_metrics(labels_t[torch.as_tensor(indices)], labels_t, relevant,
                                VOTE_K, weights)
    figures["k"] = k
    return figures


def timed(fn, x, labels, repeats: int) -> tuple[dict, float, int]:
    times, peaks, result = [], [], None
    for _ in range(repeats):
        with PeakMemory() as memory:
            start = time.perf_counter()
            result = fn(x, labels)
            times.append(time.perf_counter() - start)
        peaks.append(memory.extra)
    return result, statistics.median(times), max(peaks)


def run(quick: bool) -> dict:
    n = 10_000 if quick else 50_000
    repeats = 3 if quick else 2  # a 50k run takes minutes on a 2-core machine
    x, labels = synthetic(n)
    ours, t_ours, mem_ours = timed(imgexp_eval, x, labels, repeats)
    ref, t_ref, mem_ref = timed(sklearn_eval, x, labels, repeats)
    keys = ("knn_acc", "precision_at_1", "r_precision", "map_at_r")
    return {
        "n": n, "dim": DIM, "k": ours["k"], "repeats": repeats,
        "imgexp": {key: ours[key] for key in keys},
        "sklearn": {key: ref[key] for key in keys},
        "max_abs_diff": max(abs(ours[key] - ref[key]) for key in keys),
        "imgexp_s": round(t_ours, 3), "sklearn_s": round(t_ref, 3),
        "time_ratio_sklearn_over_imgexp": round(t_ref / t_ours, 2),
        "imgexp_peak_mib": round(mem_ours / 2**20, 1),
        "sklearn_peak_mib": round(mem_ref / 2**20, 1),
        "nxn_float32_mib": round(n * n * 4 / 2**20, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
