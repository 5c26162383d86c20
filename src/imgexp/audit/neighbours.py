"""Near-duplicate pairs: candidates by cosine of small grey pictures, confirmed by alignment.

A cosine between two 16x16 pictures cannot tell a cropped or rotated copy (cosine as low as
~0.83) from another photo of the same scene (up to ~0.99: burst shots of one hand). So every
candidate pair is aligned (OpenCV's ECC, an affine warp: crop, scale, small rotation) and the
aligned 32x32 pictures are compared by correlation on their common centre. Copies then
correlate >= ~0.99 and different photos stay below (benchmarks/bench_audit.py measures it).

Each image's k nearest neighbours come from an exact search a block of rows at a time (memory
block x N, time N^2) or, for large sets, from a faiss inverted-file index (time ~N): the
vectors are projected on their 32 principal axes, cut into N/256 cells by k-means, and each
image is compared with the images of its 4 nearest cells only. The index only proposes:
every neighbour's distance is then recomputed exactly on the full vectors, so both searches
give the same distances and the index can only miss a neighbour, never invent one
(benchmarks/bench_audit.py measures the time growth and what the index misses).
"""

import logging

import cv2
import numpy as np

# rows of the similarity matrix held at once: block x N float32 stays ~64 MB
CELLS_PER_BLOCK = 16_000_000
ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
MARGIN = 4  # pixels of the 32x32 aligned picture left out: the warp's empty border
# the index: 256 images per cell keeps the work per image constant as N grows (time ~N);
# 4 cells searched per image, in 32 dimensions (blurred 16x16 pictures are smooth: a few
# principal axes carry most of their variance)
INDEX_CELL_SIZE, INDEX_PROBES, INDEX_DIM = 256, 4, 32


def nearest(vectors: np.ndarray, k: int, method: str, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows (N, k) and their exact squared euclidean distances,
    nearest first; rows short of k neighbours are padded with index -1 and distance inf."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    proposed = _index_candidates(vectors, k, seed) if method == "index" else None
    norms = (vectors * vectors).sum(1)
    width = n if proposed is None else proposed.shape[1] * vectors.shape[1]
    block = max(1, CELLS_PER_BLOCK // width)
    out_i = np.empty((n, k), np.int64)
    out_d = np.empty((n, k), np.float32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = np.arange(stop - start)
        if proposed is None:
            cols = None
            dist = norms[start:stop, None] + norms[None, :] - 2 * vectors[start:stop] @ vectors.T
            dist[rows, rows + start] = np.inf
        else:  # exact distances to the proposed rows only
            cols = proposed[start:stop]
            diff = vectors[np.maximum(cols, 0)] - vectors[start:stop, None, :]
            dist = np.einsum("ijk,ijk->ij", diff, diff)
            dist[(cols < 0) | (cols == (rows + start)[:, None])] = np.inf
        top = np.argpartition(dist, k - 1, axis=1)[:, :k]
        d = np.take_along_axis(dist, top, 1)
        order = np.argsort(d, axis=1, kind="stable")
        top, d = np.take_along_axis(top, order, 1), np.take_along_axis(d, order, 1)
        idx = top if cols is None else np.take_along_axis(cols, top, 1)
        out_i[start:stop] = np.where(np.isfinite(d), idx, -1)
        out_d[start:stop] = np.maximum(d, 0)
    return out_i, out_d


def _index_candidates(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(N, k + 1) rows proposed by a faiss IVF index on the principal axes (-1: none)."""
    # faiss logs at INFO that it fell back from its AVX2 build, which reads like a failure
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    n, dim = vectors.shape
    x = vectors
    if dim > INDEX_DIM and n > 8 * INDEX_DIM:  # PCA needs more rows than axes
        pca = faiss.PCAMatrix(dim, INDEX_DIM)
        sample = np.random.default_rng(seed).permutation(n)[:20_000]
        pca.train(vectors[sample])
        x = pca.apply(vectors)
    cells = max(1, n // INDEX_CELL_SIZE)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(x.shape[1]), x.shape[1], cells)
    ivf.cp.seed = seed
    # k-means on a 20k sample at most, so its cost grows with the cells only (~N); assigning
    # N images to N/256 cells stays ~N^2, with a small constant (32-d, BLAS)
    ivf.cp.max_points_per_centroid = max(1, 20_000 // cells)
    ivf.train(x)
    ivf.add(x)
    ivf.nprobe = INDEX_PROBES
    _, proposed = ivf.search(x, k + 1)  # + 1: the image itself is usually among them
    return proposed.astype(np.int64)


def candidate_pairs(vectors: np.ndarray, k: int, min_cosine: float, method: str = "exact"
                    ) -> np.ndarray:
    """(i, j) with i < j where j is among i's k most similar (or i among j's), cosine >=
    min_cosine; vectors are unit rows."""
    idx, dist = nearest(vectors, k, method)
    # unit rows: |a - b|^2 = 2 - 2 cos
    keep = (idx >= 0) & (1 - dist / 2 >= min_cosine)
    i = np.broadcast_to(np.arange(len(idx))[:, None], idx.shape)[keep]
    pairs = np.sort(np.stack([i, idx[keep]], axis=1), axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2).astype(np.int64)


def aligned_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of `a` with `b` warped onto it (affine), on the common centre."""
    warp = np.eye(2, 3, dtype=np.float32)
    try:
        _, warp = cv2.findTransformECC(a, b, warp, cv2.MOTION_AFFINE, ECC_CRITERIA, None, 1)
    except cv2.error:
        pass  # no convergence: compare unaligned, which only lowers the correlation
    size = a.shape[::-1]
    moved = cv2.warpAffine(b, warp, size, flags=cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP)
    x = a[MARGIN:-MARGIN, MARGIN:-MARGIN].ravel()
    y = moved[MARGIN:-MARGIN, MARGIN:-MARGIN].ravel()
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9))


def verify(pairs: np.ndarray, pictures: np.ndarray) -> np.ndarray:
    """1 - aligned correlation of each pair: 0 for identical pictures."""
    pictures = pictures.astype(np.float32)
    return np.array([1.0 - aligned_correlation(pictures[i], pictures[j]) for i, j in pairs],
                    dtype=np.float64)
