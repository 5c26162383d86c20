"""Group identical and near-identical images, and pick the one copy of each group that stays.

Exact duplicates share a sha256. Near duplicates (resized, re-encoded, lightly edited copies)
have 64-bit perceptual hashes within a Hamming radius; a group is a connected component of
those links, so copies of copies end up together. Which copy stays is an explicit rule.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from imgexp.errors import ImgexpError
from imgexp.prepare.checks import FileCheck

# Sort keys: the smallest one is kept. Ties go to the copy in the earliest split folder (so
# a test image copied from train leaves the test set), then to the first path.
KEEP_RULES: dict[str, Callable[[FileCheck], tuple]] = {
    "largest": lambda c: (-(c.width * c.height), -c.n_bytes),
    "first": lambda c: (),
    "oldest": lambda c: (c.mtime,),
}
# Pairwise distances are computed a block of rows at a time: block x n stays ~32 MB.
PAIRS_PER_BLOCK = 4_000_000


@dataclass(frozen=True)
class Duplicate:
    path: str       # the copy left out of the manifest (or kept with its group's split)
    kept: str       # the group's kept copy
    kind: str       # "exact" (same sha256) or "near" (perceptual hashes within the radius)
    distance: int   # Hamming distance between the two perceptual hashes (0 when exact)


def find_duplicates(checks: list[FileCheck], keep: str = "largest",
                    near_radius: int | None = None, split_rank: dict[str, int] | None = None,
                    ) -> list[Duplicate]:
    """Every non-kept member of every duplicate group, sorted by path.

    `split_rank`: path -> rank of the split folder it sits in (train 0, val 1, test 2).
    """
    if keep not in KEEP_RULES:
        raise ImgexpError(f"prepare.keep={keep!r} is not a rule: use one of {sorted(KEEP_RULES)}")
    edges: list[tuple[int, int]] = []
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, check in enumerate(checks):
        by_sha[check.sha256].append(i)
    for members in by_sha.values():
        edges += [(members[0], i) for i in members[1:]]
    if near_radius is not None:
        edges += near_pairs(np.array([c.phash for c in checks], dtype=np.uint64), near_radius)
    out = []
    for members in connected_groups(len(checks), edges):
        kept = checks[min(members, key=lambda i: (*KEEP_RULES[keep](checks[i]),
                                                  (split_rank or {}).get(checks[i].path, 0),
                                                  checks[i].path))]
        for i in members:
            other = checks[i]
            if other is kept:
                continue
            exact = other.sha256 == kept.sha256
            distance = 0 if exact or other.phash is None else hamming(other.phash, kept.phash)
            out.append(Duplicate(other.path, kept.path, "exact" if exact else "near", distance))
    return sorted(out, key=lambda d: d.path)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_pairs(hashes: np.ndarray, radius: int) -> list[tuple[int, int]]:
    """(i, j) with i < j and Hamming distance <= radius, vectorised block by block."""
    n = len(hashes)
    block = max(1, PAIRS_PER_BLOCK // max(n, 1))
    pairs: list[tuple[int, int]] = []
    for start in range(0, n, block):
        distances = np.bitwise_count(hashes[start:start + block, None] ^ hashes[None, :])
        rows, cols = np.nonzero(distances <= radius)
        rows += start
        upper = rows < cols
        pairs += zip(rows[upper].tolist(), cols[upper].tolist(), strict=True)
    return pairs


def connected_groups(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components with more than one member, each sorted."""
    if not edges:
        return []
    rows, cols = np.array(edges).T
    graph = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(component.tolist()):
        members[c].append(i)
    return [m for m in members.values() if len(m) > 1]
