"""Unit tests of the evaluation building blocks on hand-made inputs with known answers."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from imgexp.metrics.calibration import (
    expected_calibration_error,
    plot_reliability,
    reliability_bins,
)
from imgexp.metrics.classification import classification_scores, retrieval_map
from imgexp.metrics.confusion import confusion_counts, most_confused, normalise_rows


def unit_angle(degrees) -> np.ndarray:
    rad = np.radians(np.asarray(degrees, dtype=float))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def test_retrieval_map_on_a_toy_ranking_computed_by_hand():
    # gallery on the unit circle; query 0 at 0 deg ranks the gallery by angle:
    #   10(A) 20(B) 30(A) 100(B) 170(A)  -> relevant (A) at ranks 1, 3, 5
    #   AP = (1/1 + 2/3 + 3/5) / 3 = 0.755...
    # query 1 (class B) at 180 deg ranks: 170(A) 100(B) 30(A) 20(B) 10(A)
    #   relevant (B) at ranks 2, 4 -> AP = (1/2 + 2/4) / 2 = 0.5
    gallery = unit_angle([10, 20, 30, 100, 170])
    gallery_labels = np.array([0, 1, 0, 1, 0])
    queries = unit_angle([0, 180])
    ap_a = (1 + 2 / 3 + 3 / 5) / 3
    ap_b = (1 / 2 + 2 / 4) / 2
    got = retrieval_map(queries, np.array([0, 1]), gallery, gallery_labels)
    assert got == pytest.approx((ap_a + ap_b) / 2, abs=1e-12)


def test_retrieval_map_ignores_queries_without_relevant_gallery_items_and_scales():
    gallery = unit_angle([0, 90])
    # class 2 has no gallery image: its query has no AP and must not count as 0 or 1
    got = retrieval_map(unit_angle([1, 45]) * 7.0, np.array([0, 2]), gallery * 3.0,
                        np.array([0, 1]))
    assert got == pytest.approx(1.0)


def test_retrieval_map_matches_sklearn_average_precision_per_query_on_random_data():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(30, 8)), rng.normal(size=(200, 8))
    ql, gl = rng.integers(0, 4, 30), rng.integers(0, 4, 200)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    expected = np.mean([average_precision_score(gl == ql[i], gn @ qn[i]) for i in range(30)])
    assert retrieval_map(q, ql, g, gl, chunk=7) == pytest.approx(expected, abs=1e-9)


def test_retrieval_map_leave_one_out_when_queries_are_the_gallery():
    emb = unit_angle([0, 5, 90, 95])
    labels = np.array([0, 0, 1, 1])
    # each image's only other same-class image is its nearest neighbour
    assert retrieval_map(emb, labels, emb, labels, exclude_self=True) == pytest.approx(1.0)
    # a class with a single image has nothing to retrieve once itself is excluded
    labels = np.array([0, 0, 1, 2])
    assert retrieval_map(emb, labels, emb, labels, exclude_self=True) == pytest.approx(1.0)


def test_classification_scores_on_a_small_case():
    labels = np.array([0, 0, 1, 1, 2, 2])
    proba = np.array([[.8, .1, .1], [.4, .5, .1], [.1, .8, .1],
                      [.1, .7, .2], [.2, .2, .6], [.5, .1, .4]])
    s = classification_scores(labels, proba, top_k=(2, 3))
    assert s["acc"] == pytest.approx(4 / 6)
    assert s["balanced_acc"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # per class precision: 0 -> 1/2, 1 -> 2/3, 2 -> 1/1
    assert s["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert s["top2_acc"] == pytest.approx(6 / 6)
    assert "top3_acc" not in s  # k = number of classes: always 1, not reported
    assert s["log_loss"] == pytest.approx(-np.mean(np.log([.8, .4, .8, .7, .6, .4])))
    # ECE with 15 bins: confidences .8 .5 .8 .7 .6 .5 / hits 1 0 1 1 1 0
    conf, hit = np.array([.8, .5, .8, .7, .6, .5]), np.array([1, 0, 1, 1, 1, 0])
    bins = np.minimum((conf * 15).astype(int), 14)
    ece = sum(abs(conf[bins == b].mean() - hit[bins == b].mean()) * (bins == b).mean()
              for b in set(bins))
    assert s["ece"] == pytest.approx(ece, abs=1e-6)


@pytest.mark.parametrize("n_bins", [5, 15])
def test_reliability_bins_reproduce_the_reported_ece(n_bins, tmp_path):
    """Fixed probabilities, with confidences of exactly 1.0 and on bin edges (0.6, 0.8)."""
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.full(4, 0.5), size=200)
    proba[:12] = np.eye(4)[np.arange(12) % 4]            # confidence exactly 1.0
    proba[12:20] = [0.6, 0.2, 0.1, 0.1]                  # on an edge when n_bins = 5
    proba[20:26] = [0.1, 0.8, 0.05, 0.05]
    labels = rng.integers(0, 4, size=200)
    labels[:8] = np.arange(8) % 4                        # 8 of the 12 sure ones are right
    bins = reliability_bins(labels, proba, n_bins)
    reported = classification_scores(labels, proba, calibration_bins=n_bins)["ece"]
    assert expected_calibration_error(bins) == pytest.approx(reported, abs=1e-6)
    assert bins["count"].sum() == 200
    # torchmetrics' own bin for confidences of exactly 1.0: the 12 one-hot rows, 8 right
    sure = bins.iloc[n_bins]
    assert (sure["bin_lower"], sure["bin_upper"], sure["count"]) == (1.0, 1.0, 12)
    assert sure["accuracy"] == pytest.approx(8 / 12) and sure["gap"] == pytest.approx(1 / 3)
    regular = bins.iloc[:n_bins]
    assert np.allclose(regular["bin_upper"] - regular["bin_lower"], 1 / n_bins)
    empty = regular["count"] == 0
    assert regular.loc[empty, "accuracy"].isna().all()
    full = regular[~empty]
    assert full["confidence"].between(full["bin_lower"], full["bin_upper"]).all()
    path = plot_reliability(bins, expected_calibration_error(bins), tmp_path / "r.png", "test")
    assert path.stat().st_size > 5000


def test_reliability_bins_leave_out_the_empty_bin_of_exact_ones():
    labels, proba = np.array([0, 1]), np.array([[0.7, 0.3], [0.6, 0.4]])
    bins = reliability_bins(labels, proba, 10)
    assert len(bins) == 10 and bins["count"].tolist() == [0] * 6 + [1, 1, 0, 0]
    # 0.7 right (gap -0.3), 0.6 wrong (gap 0.6), one image each
    assert expected_calibration_error(bins) == pytest.approx((0.3 + 0.6) / 2, abs=1e-6)


def test_confusion_rows_sum_to_supports_and_pairs_are_ranked():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 2, 0, 0, 1])
    counts = confusion_counts(labels, pred, 4)
    assert counts.sum(axis=1).tolist() == [3, 2, 4, 0]
    assert normalise_rows(counts)[3].tolist() == [0, 0, 0, 0]  # no support: no division by 0
    table = most_confused(counts, ["a", "b", "c", "d"])
    assert table[["true", "predicted", "count"]].values.tolist() == [
        ["a", "b", 2], ["c", "a", 2], ["b", "c", 1], ["c", "b", 1]]
    assert table.loc[0, "rate_of_true_class"] == pytest.approx(2 / 3)


def test_most_confused_table_is_empty_without_errors():
    table = most_confused(np.diag([3, 4]), ["a", "b"])
    assert isinstance(table, pd.DataFrame) and table.empty
