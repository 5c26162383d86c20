"""The CBIR seed's scores: MMAP at depth k and the inverse-distance weighted vote."""

import numpy as np
import pytest
import torch
from sklearn.utils.extmath import weighted_mode

from imgexp.metrics.retrieval import average_precision_at_k, knn_search, knn_vote, mmap_at_k


def seed_ap(query_class, ranked_classes) -> float:
    """The formula, written out: the mean of the precision at each hit, 0 without a hit."""
    precisions, hits = [], 0
    for rank, cls in enumerate(ranked_classes, start=1):
        if cls == query_class:
            hits += 1
            precisions.append(hits / rank)
    return float(np.mean(precisions)) if precisions else 0.0


def line(positions) -> np.ndarray:
    """Unit vectors at these angles: ranking by cosine = ranking by angle distance."""
    positions = np.asarray(positions, dtype=np.float64)
    return np.stack([np.cos(positions), np.sin(positions)], axis=1)


def test_mmap_at_k_equals_the_formula_on_a_hand_made_ranking():
    # gallery: 6 images at increasing angles, classes 0 0 1 0 1 1
    gallery_angles = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    gallery_labels = np.array([0, 0, 1, 0, 1, 1])
    # three queries of class 0 and one of class 1, each placed so its ranking is known
    query_angles = [-0.05, 0.21, 0.52, 0.44]
    query_labels = np.array([0, 0, 0, 1])
    k = 4
    rankings = [np.argsort(np.abs(np.array(gallery_angles) - q), kind="stable")[:k]
                for q in query_angles]
    aps = [seed_ap(c, gallery_labels[r]) for c, r in zip(query_labels, rankings, strict=True)]
    expected = np.mean([np.mean(aps[:3]), aps[3]])  # class MAPs, then their mean
    got = mmap_at_k(line(query_angles), query_labels, line(gallery_angles), gallery_labels, k=k)
    assert got == pytest.approx(expected, abs=1e-12)
    # class-balanced, not query-balanced: differs from the plain mean of the APs here
    assert got != pytest.approx(np.mean(aps), abs=1e-3)
    # depth matters: k=1 is precision@1 averaged per class
    assert mmap_at_k(line(query_angles), query_labels, line(gallery_angles), gallery_labels,
                     k=1) == pytest.approx(np.mean([np.mean([1, 0, 0]), 1.0]))


def test_average_precision_at_k_rows():
    hits = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    expected = [seed_ap(1, row.tolist()) for row in hits.int()]
    assert average_precision_at_k(hits).tolist() == pytest.approx(expected)


def test_mmap_at_k_leave_one_out_skips_the_query_itself():
    emb = line([0.0, 0.01, 1.0, 1.01])
    labels = np.array([0, 0, 1, 1])
    assert mmap_at_k(emb, labels, emb, labels, k=1, exclude_self=True) == 1.0
    assert mmap_at_k(emb, labels, emb, labels, k=3, exclude_self=True) == 1.0


def sklearn_votes(query, gallery, labels, k):
    """weighted_mode over the k nearest labels with weights 1 / distance, as the seed did."""
    sims, idx = knn_search(query, gallery, k)
    distances = (2 - 2 * sims.double()).clamp_min(0).sqrt().numpy()
    return np.array([int(weighted_mode(labels[i], 1.0 / (d + 1e-6))[0][0])
                     for i, d in zip(idx.numpy(), distances, strict=True)])


def test_weighted_vote_matches_sklearn_weighted_mode_on_ties_and_near_ties():
    # exact tie: class 1 and class 0 at mirror-image angles (same distance), one each;
    # weighted_mode and the vote both take the smaller class
    query = line([0.0])
    tie = line([0.3, -0.3])
    for labels in (np.array([1, 0]), np.array([0, 1])):
        got = knn_vote(query, tie, labels, 2, k=2, weighted=True).argmax(1).numpy()
        assert got.tolist() == sklearn_votes(query, tie, labels, 2).tolist() == [0]
    # near tie: two class-0 neighbours at angle 0.4 against one class-1 neighbour at the
    # angle whose chord is half theirs (1/d equal to their sum), moved by 1e-4 either way
    half = 2 * np.arcsin(0.5 * np.sin(0.2))
    for nearer, expected in ((half - 1e-4, 1), (half + 1e-4, 0)):
        gallery = line([nearer, 0.4, -0.4])
        labels = np.array([1, 0, 0])
        got = knn_vote(query, gallery, labels, 2, k=3, weighted=True).argmax(1).numpy()
        assert got.tolist() == sklearn_votes(query, gallery, labels, 3).tolist() == [expected]
    # and on random data with many near ties (few distinct distances)
    rng = np.random.default_rng(0)
    gallery = line(np.round(rng.uniform(-1, 1, 60), 2))
    labels = rng.integers(0, 4, 60)
    queries = line(rng.uniform(-1, 1, 200))
    got = knn_vote(queries, gallery, labels, 4, k=7, weighted=True).argmax(1).numpy()
    assert (got == sklearn_votes(queries, gallery, labels, 7)).all()
    # unweighted is a plain majority, which disagrees on the near tie above
    gallery = line([half - 1e-4, 0.4, -0.4])
    assert knn_vote(query, gallery, np.array([1, 0, 0]), 2, k=3,
                    weighted=False).argmax(1).tolist() == [0]
