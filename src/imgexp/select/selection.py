"""How many images to take from each cluster, and which ones.

The seed's rule: the bigger a cluster, the smaller the share taken from it, decaying
exponentially from p_max (smallest cluster) to p_min (largest):
    p(n) = p_min + (p_max - p_min) * exp(-growth * (n - n_min) / (n_max - n_min))
"""

import heapq
import logging

import numpy as np
from sklearn.cluster import KMeans

from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)
WITHIN = ("kcenter", "centroid", "random")


def check_shares(p_min: float, p_max: float, growth: float) -> None:
    if not 0 <= p_min <= p_max <= 1:
        raise ImgexpError(f"select.p_min={p_min} and select.p_max={p_max} must satisfy "
                          "0 <= p_min <= p_max <= 1")
    if growth < 0:
        raise ImgexpError(f"select.growth={growth} must be >= 0 (0 = every cluster gets p_max)")


def cluster_shares(sizes, p_min: float, p_max: float, growth: float) -> np.ndarray:
    """The share p(n) of each cluster; every cluster gets p_max when all have the same size."""
    check_shares(p_min, p_max, growth)
    sizes = np.asarray(sizes, dtype=float)
    n_min, n_max = sizes.min(), sizes.max()
    if n_max == n_min:
        return np.full(len(sizes), float(p_max))
    return p_min + (p_max - p_min) * np.exp(-growth * (sizes - n_min) / (n_max - n_min))


def cluster_counts(sizes, shares, min_per_cluster: int = 1) -> np.ndarray:
    """max(min_per_cluster, round(p(n) * n)), never more than the cluster holds."""
    sizes = np.asarray(sizes)
    counts = np.maximum(min_per_cluster, np.round(np.asarray(shares) * sizes))
    return np.minimum(counts, sizes).astype(np.int64)


def solve_budget(sizes, budget: int, p_min: float, p_max: float, growth: float,
                 min_per_cluster: int = 1) -> np.ndarray:
    """Counts summing to exactly `budget`, with shares s * p(n) (same curve, scaled by s).

    Bisection finds the largest s whose rounded total stays within the budget; the few images
    rounding left over go to the clusters whose unrounded count was closest to the next one.
    """
    sizes = np.asarray(sizes)
    floor = np.minimum(min_per_cluster, sizes).sum()
    if not floor <= budget <= sizes.sum():
        raise ImgexpError(f"select.budget={budget} is out of reach: it must be between "
                          f"{floor} (min_per_cluster={min_per_cluster} in each of {len(sizes)} "
                          f"clusters) and {sizes.sum()} (every image)")
    base = cluster_shares(sizes, p_min, p_max, growth)
    base = np.where(base > 0, base, 1e-12)  # p_min = 0 must still scale up

    def counts_at(scale: float) -> np.ndarray:
        return cluster_counts(sizes, np.minimum(1.0, scale * base), min_per_cluster)

    lo, hi = 0.0, 1.0 / base.min()
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if counts_at(mid).sum() <= budget else (lo, mid)
    counts = counts_at(lo)
    wanted = np.minimum(1.0, hi * base) * sizes
    room = np.flatnonzero(counts < sizes)
    order = room[np.argsort(-(wanted[room] - counts[room]), kind="stable")]
    counts[order[:budget - counts.sum()]] += 1
    return counts


def kcenter(points: np.ndarray, count: int, starts,
            block_of: np.ndarray | None = None) -> np.ndarray:
    """Greedy farthest-point traversal: each pick is the point farthest from those picked.

    `block_of` (block of each point; None = one block) limits the distances to points of the
    same block, each block starting from its entry in `starts`; each step still takes the
    farthest point over all blocks. -> the picks in order.
    """
    starts = np.atleast_1d(starts)
    block_of = np.zeros(len(points), dtype=np.int64) if block_of is None else block_of
    picked, heap, blocks = list(starts), [], []
    for b, start in enumerate(starts):
        members = np.flatnonzero(block_of == b)
        pts = points[members]
        sq = np.einsum("ij,ij->i", pts, pts)
        local = int(np.searchsorted(members, start))
        nearest = np.maximum(sq - 2 * pts @ pts[local] + sq[local], 0)
        nearest[local] = -1
        blocks.append((members, pts, sq, nearest))
        far = int(np.argmax(nearest))
        heapq.heappush(heap, (-nearest[far], b, far))
    while len(picked) < count:
        _, b, j = heapq.heappop(heap)  # the block holding the farthest point, and that point
        members, pts, sq, nearest = blocks[b]
        picked.append(members[j])
        np.minimum(nearest, np.maximum(sq - 2 * pts @ pts[j] + sq[j], 0), out=nearest)
        nearest[j] = -1  # picked points stay at -1: the minimum never raises them
        far = int(np.argmax(nearest))
        heapq.heappush(heap, (-nearest[far], b, far))
    return np.asarray(picked, dtype=np.int64)


def blocked_kcenter(points: np.ndarray, distances: np.ndarray, count: int, block: int | None,
                    seed: int) -> np.ndarray:
    """k-center from the most typical image; in blocks of about `block` look-alike points
    when the cluster is bigger.

    A traversal costs (picks x cluster size): quadratic in the cluster size, since the picks
    grow with it. k-means cuts a big cluster into blocks and distances are measured inside a
    block only (linear), while each step still takes the farthest point over all blocks.
    """
    if not block or len(points) <= block:
        return kcenter(points, count, int(np.argmin(distances)))
    n_blocks = min(count, -(-len(points) // block))
    parts = KMeans(n_blocks, n_init=1, random_state=seed).fit(points)
    # each block starts from its most typical image, as a whole cluster does
    gap = np.linalg.norm(points - parts.cluster_centers_[parts.labels_], axis=1)
    members = [np.flatnonzero(parts.labels_ == b) for b in range(n_blocks)]
    starts = [m[np.argmin(gap[m])] for m in members]
    return kcenter(points, count, starts, parts.labels_)


def pick_within(points: np.ndarray, distances: np.ndarray, count: int, within: str,
                rng: np.random.Generator, block: int | None = None) -> np.ndarray:
    """Indices (into points) of the `count` images taken from one cluster, in pick order."""
    if within == "centroid":
        return np.argsort(distances, kind="stable")[:count]
    if within == "random":
        return rng.permutation(len(points))[:count]
    return blocked_kcenter(points, distances, count, block, int(rng.integers(2**31)))


def select(points: np.ndarray, labels: np.ndarray, distances: np.ndarray, counts: np.ndarray,
           within: str = "kcenter", seed: int = 0,
           block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> selected indices (sorted) and each one's rank of pick inside its cluster."""
    if within not in WITHIN:
        raise ImgexpError(f"select.within={within!r} is not an option: use one of {WITHIN}")
    rng = np.random.default_rng(seed)
    chosen, ranks = [], []
    for c, count in enumerate(counts):
        members = np.flatnonzero(labels == c)
        if count == 0 or len(members) == 0:
            continue
        order = pick_within(points[members], distances[members], int(count), within, rng,
                            block)
        chosen.append(members[order])
        ranks.append(np.arange(len(order)))
    chosen_all, ranks_all = np.concatenate(chosen), np.concatenate(ranks)
    order = np.argsort(chosen_all)
    return chosen_all[order], ranks_all[order]
