"""How many images to take from each cluster, and which ones.

The seed's rule: the bigger a cluster, the smaller the share taken from it, decaying
exponentially with the cluster's size relative to the typical (median) cluster, r = n / median:
    p(r) = p_min + (p_max - p_min) * exp(-growth * r)
p_max for clusters much smaller than typical, p_min for much larger ones. Relative, not ranked:
multiplying every size by k changes no share, and clusters of close sizes get close shares
(the former range-normalised curve gave 60% and 17% to clusters of 195 and 217 images).
"""

import heapq
import logging
from collections.abc import Callable

import numpy as np
from sklearn.cluster import KMeans

from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)
WITHIN = ("kcenter", "typical", "centroid", "random")


def check_shares(p_min: float, p_max: float, growth: float) -> None:
    if not 0 <= p_min <= p_max <= 1:
        raise ImgexpError(f"select.p_min={p_min} and select.p_max={p_max} must satisfy "
                          "0 <= p_min <= p_max <= 1")
    if growth < 0:
        raise ImgexpError(f"select.growth={growth} must be >= 0 (0 = every cluster gets p_max)")


def relative_sizes(sizes) -> np.ndarray:
    """Each cluster's size over the median cluster size: the median, not the mean, so that one
    giant cluster (k-means often makes one of near-identical images) does not make every other
    cluster look small."""
    sizes = np.asarray(sizes, dtype=float)
    return sizes / max(float(np.median(sizes)), 1.0)


def share_curve(relative, p_min: float, p_max: float, growth: float) -> np.ndarray:
    """p(r) = p_min + (p_max - p_min) * exp(-growth * r), r = size / median size."""
    return p_min + (p_max - p_min) * np.exp(-growth * np.asarray(relative, dtype=float))


def cluster_shares(sizes, p_min: float, p_max: float, growth: float) -> np.ndarray:
    """The share p(r) of each cluster, r its size relative to the median cluster."""
    check_shares(p_min, p_max, growth)
    return share_curve(relative_sizes(sizes), p_min, p_max, growth)


def cluster_counts(sizes, shares, min_per_cluster: int = 1) -> np.ndarray:
    """max(min_per_cluster, round(p(n) * n)), never more than the cluster holds."""
    sizes = np.asarray(sizes)
    counts = np.maximum(min_per_cluster, np.round(np.asarray(shares) * sizes))
    return np.minimum(counts, sizes).astype(np.int64)


def _scaled_counts(sizes: np.ndarray, base: np.ndarray, scale: float,
                   min_per_cluster: int) -> np.ndarray:
    return cluster_counts(sizes, np.minimum(1.0, scale * base), min_per_cluster)


def _budget_base(sizes: np.ndarray, budget: int, p_min: float, p_max: float, growth: float,
                 min_per_cluster: int) -> np.ndarray:
    floor = np.minimum(min_per_cluster, sizes).sum()
    if not floor <= budget <= sizes.sum():
        raise ImgexpError(f"select.budget={budget} is out of reach: it must be between "
                          f"{floor} (min_per_cluster={min_per_cluster} in each of {len(sizes)} "
                          f"clusters) and {sizes.sum()} (every image)")
    base = cluster_shares(sizes, p_min, p_max, growth)
    return np.where(base > 0, base, 1e-12)  # p_min = 0 must still scale up


def _bisect(sizes: np.ndarray, base: np.ndarray, budget: int,
            min_per_cluster: int) -> tuple[float, float]:
    """lo: the largest scale found whose rounded total stays within the budget; hi: just above."""
    lo, hi = 0.0, 1.0 / base.min()
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _scaled_counts(sizes, base, mid, min_per_cluster).sum() <= budget \
            else (lo, mid)
    return lo, hi


def budget_scale(sizes, budget: int, p_min: float, p_max: float, growth: float,
                 min_per_cluster: int = 1) -> float:
    """The s by which select.budget scales the curve: shares min(1, s * p(r))."""
    sizes = np.asarray(sizes)
    base = _budget_base(sizes, budget, p_min, p_max, growth, min_per_cluster)
    return _bisect(sizes, base, budget, min_per_cluster)[1]


def solve_budget(sizes, budget: int, p_min: float, p_max: float, growth: float,
                 min_per_cluster: int = 1) -> np.ndarray:
    """Counts summing to exactly `budget`, with shares s * p(r) (same curve, scaled by s).

    Bisection finds the largest s whose rounded total stays within the budget; the few images
    rounding left over go to the clusters whose unrounded count was closest to the next one.
    """
    sizes = np.asarray(sizes)
    base = _budget_base(sizes, budget, p_min, p_max, growth, min_per_cluster)
    lo, hi = _bisect(sizes, base, budget, min_per_cluster)
    counts = _scaled_counts(sizes, base, lo, min_per_cluster)
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


def typical(points: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The most typical image of each of `count` look-alike groups of the cluster (k-means
    inside it), biggest group first: spread like k-center, but far fewer outliers, which is
    what a small annotation budget wants (Hacohen et al. 2022, "Active learning on a budget":
    typical examples win at low budgets, diverse ones at high). An outlier that k-means leaves
    alone in a group is still that group's pick, last in pick order."""
    if count >= len(points):
        return np.arange(len(points))
    parts = KMeans(count, n_init=1, random_state=seed).fit(points)
    gap = np.linalg.norm(points - parts.cluster_centers_[parts.labels_], axis=1)
    groups = np.bincount(parts.labels_, minlength=count)
    medoids = [np.flatnonzero(parts.labels_ == g)[np.argmin(gap[parts.labels_ == g])]
               for g in np.argsort(-groups, kind="stable") if groups[g]]
    return np.asarray(medoids, dtype=np.int64)


def pick_within(points: np.ndarray, distances: np.ndarray, count: int, within: str,
                rng: np.random.Generator, block: int | None = None) -> np.ndarray:
    """Indices (into points) of the `count` images taken from one cluster, in pick order."""
    if within == "centroid":
        return np.argsort(distances, kind="stable")[:count]
    if within == "random":
        return rng.permutation(len(points))[:count]
    if within == "typical":
        return typical(points, count, int(rng.integers(2**31)))
    return blocked_kcenter(points, distances, count, block, int(rng.integers(2**31)))


def check_within(within: str) -> None:
    if within not in WITHIN:
        raise ImgexpError(f"select.within={within!r} is not an option: use one of {WITHIN}")


def select(points: np.ndarray, labels: np.ndarray, distances: np.ndarray, counts: np.ndarray,
           within: str = "kcenter", seed: int = 0, block: int | None = None,
           transform: Callable[[np.ndarray], np.ndarray] | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """-> selected indices (sorted) and each one's rank of pick inside its cluster.

    `transform(rows)` (e.g. a PCA projection of those rows of `points`) gives one cluster's
    points at a time, so a transformed copy of every point never exists at once."""
    check_within(within)
    rng = np.random.default_rng(seed)
    chosen, ranks = [], []
    for c, count in enumerate(counts):
        members = np.flatnonzero(labels == c)
        if count == 0 or len(members) == 0:
            continue
        pts = points[members] if transform is None else transform(members)
        order = pick_within(pts, distances[members], int(count), within, rng, block)
        chosen.append(members[order])
        ranks.append(np.arange(len(order)))
    chosen_all, ranks_all = np.concatenate(chosen), np.concatenate(ranks)
    order = np.argsort(chosen_all)
    return chosen_all[order], ranks_all[order]
