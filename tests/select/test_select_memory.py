"""The clustering step and the selection after it hold no copy of the N x D points beyond
what they are given: their extra peak memory (tracemalloc) grows with N only by a few bytes
per row (labels, distances), never by a row of D floats (issue 17: millions of images)."""

import tracemalloc
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest

from imgexp.select import clustering, pipeline

D = 64  # a hidden N x D float32 copy costs 256 bytes a row, a float64 one 512
PER_ROW = 48  # bytes a row allowed for N-sized scalars (labels int64, distances, weights...)


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _points(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, D)).astype(np.float32) * 4
    return centres[rng.integers(8, size=n)] + rng.standard_normal((n, D), dtype=np.float32)


@pytest.fixture
def small_steps(monkeypatch):
    # chunks far below N, so that "bounded by a chunk" is told apart from "grows with N"
    monkeypatch.setattr(clustering, "ROWS_PER_STEP", 512)


@pytest.mark.slow  # ~10 s of CPU: mini-batch k-means on 64k rows
def test_clustering_step_memory_grows_by_scalars_per_row_not_by_rows_of_features(small_steps):
    # above mini-batch k-means' own caps (its init and validation samples: 3 batches of 4096)
    n = 16_000
    peaks = [_peak(partial(clustering.cluster_features, _points(m), 8, "minibatch", seed=0,
                           show_progress=False)) for m in (n, 4 * n)]
    assert peaks[1] - peaks[0] < 3 * n * PER_ROW, peaks


def test_kcenter_projection_is_made_cluster_by_cluster_not_for_every_point(monkeypatch):
    # the PCA's fit sample is capped anyway (max_fit); cap it low so only N-growth is left
    monkeypatch.setattr(pipeline, "fit_pca", partial(clustering.fit_pca, max_fit=1_000))
    s = SimpleNamespace(within="kcenter", kcenter_dim=32, kcenter_block=None)

    def pick(m: int):
        x = _points(m)
        clusters = SimpleNamespace(space=x, labels=np.arange(m) // 200,
                                   distances=np.zeros(m, dtype=np.float32))
        counts = np.full(m // 200, 20)
        return partial(pipeline.pick, clusters, counts, s, 0)

    n = 4_000
    peaks = [_peak(pick(m)) for m in (n, 4 * n)]
    assert peaks[1] - peaks[0] < 3 * n * PER_ROW, peaks
