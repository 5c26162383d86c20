"""Chunked k-NN search and retrieval metrics against brute-force / library references."""

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.neighbors import NearestNeighbors

from imgexp.metrics import knn_search, knn_vote, retrieval_metrics


def clusters(n: int, num_classes: int = 8, dim: int = 16, noise: float = 1.0, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(99))
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    x = centers[labels] + noise * torch.randn(n, dim, generator=gen)
    return torch.nn.functional.normalize(x, dim=1), labels


def pml_reference(q, ql, g, gl, same: bool) -> dict:
    calc = AccuracyCalculator(include=("precision_at_1", "r_precision",
                                       "mean_average_precision_at_r"),
                              k="max_bin_count", knn_func=CustomKNN(CosineSimilarity()))
    return calc.get_accuracy(q, ql, g, gl, ref_includes_query=same)


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_knn_search_matches_sklearn_brute_force(chunk_size):
    q, _ = clusters(50, seed=1)
    g, _ = clusters(300, seed=2)
    sims, idx = knn_search(q, g, k=10, chunk_size=chunk_size)
    dist, ref = NearestNeighbors(n_neighbors=10, algorithm="brute").fit(g.numpy()).kneighbors(
        q.numpy())
    assert torch.equal(idx, torch.as_tensor(ref))
    np.testing.assert_allclose(sims.numpy(), 1 - dist**2 / 2, atol=1e-5)
    d, idx_e = knn_search(q, g, k=10, chunk_size=chunk_size, metric="euclidean")
    assert torch.equal(idx_e, idx)
    np.testing.assert_allclose(d.numpy(), dist, atol=1e-3)


def test_exclude_self_never_returns_the_query_itself():
    g, _ = clusters(40)
    _, idx = knn_search(g, g, k=39, chunk_size=6, exclude_self=True)
    assert idx.shape == (40, 39)
    assert not (idx == torch.arange(40)[:, None]).any()
    assert all(len(set(row.tolist())) == 39 for row in idx)


def test_metrics_equal_pytorch_metric_learning_and_count_missing_classes():
    q, ql = clusters(200, noise=1.3, seed=3)
    g, gl = clusters(600, noise=1.3, seed=4)
    gl[gl == 3] = 4  # class 3 has no gallery item: its queries have R = 0
    ours = retrieval_metrics(q, ql, g, gl, chunk_size=17)
    ref = pml_reference(q, ql, g, gl, same=False)
    assert ours["precision_at_1"] == pytest.approx(ref["precision_at_1"])
    assert ours["r_precision"] == pytest.approx(ref["r_precision"])
    assert ours["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"])
    assert ours["n_queries"] == 200
    assert ours["n_queries_without_gallery_class"] == int((ql == 3).sum()) > 0
    assert ours["k"] == int(torch.bincount(gl).max())
    assert 0.3 < ours["map_at_r"] < ours["r_precision"] < ours["precision_at_1"] < 1


def test_leave_one_out_matches_pml_when_query_is_gallery():
    g, gl = clusters(300, noise=1.2, seed=5)
    ours = retrieval_metrics(g, gl, g, gl, exclude_self=True, chunk_size=64)
    ref = pml_reference(g, gl, g, gl, same=True)
    assert ours["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"])
    assert ours["precision_at_1"] == pytest.approx(ref["precision_at_1"])


def test_map_at_r_by_hand():
    # one query of class 0; gallery ranked by similarity: rel, irrelevant, rel, rel (R = 3)
    q = torch.tensor([[1.0, 0.0]])
    angles = torch.tensor([0.1, 0.2, 0.3, 0.4])
    g = torch.stack([angles.cos(), angles.sin()], 1)
    gl = torch.tensor([0, 1, 0, 0])
    m = retrieval_metrics(q, torch.tensor([0]), g, gl, vote_k=1)
    assert m["precision_at_1"] == 1.0
    assert m["r_precision"] == pytest.approx(2 / 3)
    assert m["map_at_r"] == pytest.approx((1 + 2 / 3) / 3)
    assert m["knn_acc"] == 1.0


def test_knn_vote_is_distance_weighted():
    # one very close class-0 neighbour outweighs two distant class-1 neighbours
    q = torch.tensor([[1.0, 0.0]])
    angles = torch.tensor([0.01, 0.9, 1.0])
    g = torch.stack([angles.cos(), angles.sin()], 1)
    gl = torch.tensor([0, 1, 1])
    weighted = knn_vote(q, g, gl, num_classes=3, k=3)
    plain = knn_vote(q, g, gl, num_classes=3, k=3, weighted=False)
    assert weighted.argmax().item() == 0 and plain.argmax().item() == 1
    torch.testing.assert_close(plain, torch.tensor([[1 / 3, 2 / 3, 0.0]]))
    assert weighted.sum().item() == pytest.approx(1.0)
    assert weighted[0, 2] == 0
    assert knn_vote(q, torch.empty(0, 2), torch.empty(0), 4).tolist() == [[0.25] * 4]
