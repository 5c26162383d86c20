"""Near-duplicate pairs: candidates by cosine of small grey pictures, confirmed by alignment.

A cosine between two 16x16 pictures cannot tell a cropped or rotated copy (cosine as low as
~0.83) from another photo of the same scene (up to ~0.99: burst shots of one hand). So every
candidate pair is aligned (OpenCV's ECC, an affine warp: crop, scale, small rotation) and the
aligned 32x32 pictures are compared by correlation on their common centre. Copies then
correlate >= ~0.99 and different photos stay below (benchmarks/bench_audit.py measures it).
Candidates come from a top-k search a block of rows at a time, so memory stays block x N.
"""

import cv2
import numpy as np

# rows of the similarity matrix held at once: block x N float32 stays ~64 MB
CELLS_PER_BLOCK = 16_000_000
ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
MARGIN = 4  # pixels of the 32x32 aligned picture left out: the warp's empty border


def candidate_pairs(vectors: np.ndarray, k: int, min_cosine: float) -> np.ndarray:
    """(i, j) with i < j where j is among i's k most similar (or i among j's), cosine >=
    min_cosine; vectors are unit rows."""
    n = len(vectors)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((0, 2), dtype=np.int64)
    block = max(1, CELLS_PER_BLOCK // n)
    found = []
    for start in range(0, n, block):
        sims = vectors[start:start + block] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        keep = sims[rows[:, None], top] >= min_cosine
        i = np.broadcast_to((rows + start)[:, None], top.shape)[keep]
        found.append(np.stack([i, top[keep]], axis=1))
    pairs = np.sort(np.concatenate(found), axis=1)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


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
