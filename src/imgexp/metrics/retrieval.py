"""Nearest-neighbour search and retrieval metrics over embeddings, in bounded memory.

Similarities are computed one block of queries at a time against the whole gallery and
reduced to the top k at once, so peak memory is `chunk_size x len(gallery)` floats, never
the N x N matrix (50k x 50k float32 would be 10 GB).

Embeddings are expected L2-normalised (what `ImageClassifier.embed` returns): cosine
similarity then ranks exactly like Euclidean distance, and the distance is recovered as
sqrt(2 - 2 cos).
"""

import numpy as np
import torch

# one block of similarities holds at most this many floats (64 MiB of float32)
DEFAULT_BLOCK_ELEMENTS = 1 << 24


def _tensor(x, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(dtype)


def _chunk_size(chunk_size: int | None, gallery_size: int) -> int:
    if chunk_size is not None:
        return max(1, int(chunk_size))
    return max(1, DEFAULT_BLOCK_ELEMENTS // max(1, gallery_size))


def _search_block(q: torch.Tensor, gallery: torch.Tensor, gallery_sq: torch.Tensor, k: int,
                  offset: int | None, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Top k of one block of queries; offset: q's first row is gallery row `offset` (skip it)."""
    if metric == "cosine":
        block = q @ gallery.T
    else:  # negated squared distance, so that topk(largest) applies to both metrics
        block = 2 * (q @ gallery.T) - gallery_sq - (q * q).sum(1, keepdim=True)
    if offset is not None:
        rows = torch.arange(len(q), device=q.device)
        block[rows, rows + offset] = -torch.inf
    top, idx = block.topk(k, dim=1)
    return (top if metric == "cosine" else (-top).clamp_min(0).sqrt()), idx


def _blocks(query, gallery, k: int, chunk_size: int | None, exclude_self: bool, metric: str):
    """(start, scores, indices) per block of queries: what bounds the memory."""
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric={metric!r}: use cosine or euclidean")
    step = _chunk_size(chunk_size, len(gallery))
    gallery_sq = (gallery * gallery).sum(1)
    for start in range(0, len(query), step):
        offset = start if exclude_self else None
        yield start, *_search_block(query[start:start + step], gallery, gallery_sq, k, offset,
                                    metric)


def knn_search(query, gallery, k: int, chunk_size: int | None = None,
               exclude_self: bool = False, metric: str = "cosine"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest gallery rows of every query row, best first.

    metric="cosine" returns similarities (descending), "euclidean" distances (ascending);
    both give the same neighbours for normalised vectors. exclude_self: query row i *is*
    gallery row i (query = gallery), so it is not its own neighbour.
    """
    query, gallery = _tensor(query), _tensor(gallery)
    k = min(int(k), len(gallery) - int(exclude_self))
    if k < 1 or len(query) == 0:
        empty = torch.empty(len(query), max(k, 0), device=query.device)
        return empty, empty.long()
    parts = list(_blocks(query, gallery, k, chunk_size, exclude_self, metric))
    return torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


def _vote(neighbour_labels: torch.Tensor, weights: torch.Tensor, num_classes: int
          ) -> torch.Tensor:
    votes = torch.zeros(len(neighbour_labels), num_classes, dtype=torch.float64,
                        device=neighbour_labels.device)
    votes.scatter_add_(1, neighbour_labels, weights.double())
    return (votes / votes.sum(1, keepdim=True).clamp_min(1e-12)).float()


def _vote_weights(similarities: torch.Tensor, weighted: bool) -> torch.Tensor:
    if not weighted:
        return torch.ones_like(similarities)
    # inverse Euclidean distance on the unit sphere (the CBIR seed's weighted mode);
    # the epsilon lets an exact duplicate dominate without dividing by zero
    distances = (2 - 2 * similarities).clamp_min(0).sqrt()
    return 1.0 / (distances + 1e-6)


def knn_vote(query_emb, gallery_emb, gallery_labels, num_classes: int, k: int = 5,
             weighted: bool = True, chunk_size: int | None = None) -> torch.Tensor:
    """(N, num_classes) class probabilities: the (distance-weighted) vote of the k nearest
    gallery embeddings. An empty gallery gives uniform probabilities."""
    query_emb = _tensor(query_emb)
    if len(gallery_emb) == 0:
        return torch.full((len(query_emb), num_classes), 1.0 / num_classes,
                          device=query_emb.device)
    sims, idx = knn_search(query_emb, gallery_emb, k, chunk_size=chunk_size)
    labels = _tensor(gallery_labels, torch.long).to(idx.device)[idx]
    return _vote(labels, _vote_weights(sims, weighted), num_classes)


def _neighbour_sums(neighbour_labels: torch.Tensor, query_labels: torch.Tensor,
                    relevant_counts: torch.Tensor, vote_k: int, vote_weights: torch.Tensor | None,
                    num_classes: int) -> dict[str, float]:
    """Per-block sums behind `neighbour_metrics`, so blocks of queries can be added up."""
    device = neighbour_labels.device
    n, width = neighbour_labels.shape
    relevant = neighbour_labels == query_labels[:, None]
    ranks = torch.arange(1, width + 1, device=device)
    r = relevant_counts.long()
    within_r = relevant & (ranks[None, :] <= r[:, None])
    has_class = r > 0
    r_safe = r.clamp_min(1).double()
    ap = (within_r.cumsum(1).double() / ranks * within_r).sum(1) / r_safe
    r_precision = within_r.sum(1).double() / r_safe
    p1 = relevant[:, 0] if width else torch.zeros(n, dtype=torch.bool, device=device)
    vote_k = min(vote_k, width)
    weights = (torch.ones(n, vote_k, device=device) if vote_weights is None
               else vote_weights[:, :vote_k])
    predicted = _vote(neighbour_labels[:, :vote_k], weights, num_classes).argmax(1)
    return {"knn_correct": float((predicted == query_labels).sum()) if vote_k else 0.0,
            "p1": float(p1[has_class].double().sum()),
            "r_precision": float(r_precision[has_class].sum()),
            "map_at_r": float(ap[has_class].sum()),
            "n": n, "with_class": int(has_class.sum())}


def _finish(sums: dict[str, float]) -> dict:
    n, m = sums["n"], sums["with_class"]
    return {"knn_acc": sums["knn_correct"] / n if n else float("nan"),
            "precision_at_1": sums["p1"] / m if m else float("nan"),
            "r_precision": sums["r_precision"] / m if m else float("nan"),
            "map_at_r": sums["map_at_r"] / m if m else float("nan"),
            "n_queries": n, "n_queries_without_gallery_class": n - m}


def neighbour_metrics(neighbour_labels: torch.Tensor, query_labels: torch.Tensor,
                      relevant_counts: torch.Tensor, vote_k: int = 5,
                      vote_weights: torch.Tensor | None = None) -> dict:
    """Retrieval metrics from ranked neighbour labels (N, k) with k >= max relevant count.

    precision@1, R-precision and MAP@R (Musgrave et al. 2020) are averaged over the queries
    whose class has at least one gallery item (R > 0); the k-NN accuracy counts every query
    (one without its class in the gallery cannot be right). Shared by `retrieval_metrics`
    and the benchmark's scikit-learn baseline so both are scored by the same rule.
    """
    query_labels = query_labels.long()
    num_classes = int(max(neighbour_labels.max().item() if neighbour_labels.numel() else 0,
                          query_labels.max().item() if len(query_labels) else 0)) + 1
    return _finish(_neighbour_sums(neighbour_labels, query_labels, relevant_counts, vote_k,
                                   vote_weights, num_classes))


def retrieval_metrics(query_emb, query_labels, gallery_emb, gallery_labels,
                      k: int | None = None, chunk_size: int | None = None,
                      exclude_self: bool = False, vote_k: int = 5,
                      weighted: bool = True) -> dict:
    """k-NN accuracy, precision@1, R-precision, MAP@R of queries against a gallery.

    k defaults to the largest class size in the gallery: MAP@R and R-precision are only
    right when every query sees all R of its relevant items. With a smaller k they are
    computed over the first k (a lower bound) and `k` in the result says so.
    exclude_self: queries are the gallery itself (leave-one-out). Scored block by block:
    memory holds one block of similarities and its top k, never all N x k neighbours.
    """
    query, gallery = _tensor(query_emb), _tensor(gallery_emb)
    query_labels = _tensor(query_labels, torch.long).to(query.device)
    gallery_labels = _tensor(gallery_labels, torch.long).to(query.device)
    num_classes = int(max(query_labels.max().item() if len(query_labels) else -1,
                          gallery_labels.max().item() if len(gallery_labels) else -1)) + 1
    class_sizes = torch.bincount(gallery_labels, minlength=max(num_classes, 1))
    relevant = class_sizes[query_labels] - int(exclude_self)
    needed = int(relevant.max()) if len(relevant) else 0
    k = min(max(needed, vote_k) if k is None else int(k), len(gallery) - int(exclude_self))
    totals: dict[str, float] = {"knn_correct": 0.0, "p1": 0.0, "r_precision": 0.0,
                                "map_at_r": 0.0, "n": 0, "with_class": 0}
    if k >= 1:
        for start, sims, idx in _blocks(query, gallery, k, chunk_size, exclude_self, "cosine"):
            stop = start + len(idx)
            sums = _neighbour_sums(gallery_labels[idx], query_labels[start:stop],
                                   relevant[start:stop], vote_k, _vote_weights(sims, weighted),
                                   max(num_classes, 1))
            for key, value in sums.items():
                totals[key] += value
    else:  # empty gallery: nothing retrieved, every query wrong
        totals.update(n=len(query_labels),
                      with_class=int((relevant > 0).sum()) if len(relevant) else 0)
    metrics = _finish(totals)
    metrics["k"] = max(k, 0)
    return metrics


def average_precision_at_k(hits: torch.Tensor) -> torch.Tensor:
    """(N,) AP of ranked hit rows (N, k): the mean of the precision at each hit, 0 for a
    row without one (the CBIR seed's AP at depth k)."""
    hits = hits.double()
    ranks = torch.arange(1, hits.shape[1] + 1, device=hits.device)
    precision = hits.cumsum(1) / ranks
    return (precision * hits).sum(1) / hits.sum(1).clamp_min(1)


def mmap_at_k(query_emb, query_labels, gallery_emb, gallery_labels, k: int = 10,
              exclude_self: bool = False, chunk_size: int | None = None) -> float:
    """The CBIR seed's MMAP at depth k: each query's AP over its k nearest gallery images
    (`average_precision_at_k`), averaged per class (the class's MAP), then over the classes,
    so every class counts the same whatever its number of queries."""
    query, gallery = _tensor(query_emb), _tensor(gallery_emb)
    query_labels = _tensor(query_labels, torch.long)
    gallery_labels = _tensor(gallery_labels, torch.long)
    k = min(int(k), len(gallery) - int(exclude_self))
    if k < 1 or len(query) == 0:
        return float("nan")
    parts = []
    for start, _, idx in _blocks(query, gallery, k, chunk_size, exclude_self, "cosine"):
        labels = query_labels[start:start + len(idx)]
        parts.append(average_precision_at_k(gallery_labels[idx] == labels[:, None]))
    ap = torch.cat(parts)
    return float(torch.stack([ap[query_labels == c].mean() for c in query_labels.unique()]).mean())
