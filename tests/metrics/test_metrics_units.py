"""Unit tests of the evaluation building blocks on hand-made inputs with known answers."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from imgexp.errors import ImgexpError
from imgexp.metrics.calibration import (
    expected_calibration_error,
    plot_reliability,
    reliability_bins,
)
from imgexp.metrics.classification import classification_scores, retrieval_map
from imgexp.metrics.confusion import confusion_counts, most_confused, normalise_rows
from imgexp.models.inference import Outputs
from imgexp.predict.pipeline import list_inputs
from imgexp.predict.scores import known_class_score, threshold_for_false_reject_rate
from imgexp.predict.sorting import place


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


def test_threshold_for_false_reject_rate_rejects_at_most_that_fraction():
    scores = np.linspace(0.01, 1.0, 100)
    t = threshold_for_false_reject_rate(scores, 0.05)
    assert (scores < t).mean() == pytest.approx(0.05)
    assert threshold_for_false_reject_rate(scores, 0.0) == pytest.approx(0.01)
    with pytest.raises(ImgexpError, match="threshold_for_frr"):
        threshold_for_false_reject_rate(scores, 1.5)


def test_energy_score_is_logsumexp_of_logits():
    logits = np.array([[2.0, 0.0], [10.0, 10.0]], dtype=np.float32)
    out = Outputs(index=np.arange(2), proba=np.array([[.88, .12], [.5, .5]]), logits=logits)
    assert known_class_score(out, "energy") == pytest.approx(
        [np.log(np.exp(2) + 1), 10 + np.log(2)], rel=1e-6)
    assert known_class_score(out, "softmax").tolist() == [.88, .5]
    with pytest.raises(ImgexpError, match="predict.ood"):
        known_class_score(out, "odin")


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_place_never_overwrites(tmp_path, mode):
    src_a, src_b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    for src, data in ((src_a, b"first"), (src_b, b"second")):
        src.parent.mkdir()
        src.write_bytes(data)
    out = tmp_path / "out" / "cls"
    first, second = place(src_a, out, mode), place(src_b, out, mode)
    assert (first.name, second.name) == ("x.png", "x_1.png")
    assert first.read_bytes() == b"first" and second.read_bytes() == b"second"
    assert src_a.read_bytes() == b"first"  # sources untouched
    assert (mode == "symlink") == second.is_symlink()
    assert place(src_a, out, "none") is None


def test_list_inputs_skips_hidden_files_and_the_output_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "out" / "3").mkdir(parents=True)
    for name in ["a.png", "sub/b.jpg", "notes.txt", ".hidden.png", "Thumbs.db", "out/3/a.png"]:
        (tmp_path / name).write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in list_inputs(tmp_path, tmp_path / "out")]
    assert got == ["a.png", "notes.txt", "sub/b.jpg"]
    with pytest.raises(ImgexpError, match="input="):
        list_inputs(tmp_path / "missing")


def test_most_confused_table_is_empty_without_errors():
    table = most_confused(np.diag([3, 4]), ["a", "b"])
    assert isinstance(table, pd.DataFrame) and table.empty


def test_eval_metrics_reach_the_runs_wandb_run_and_csv_log(tmp_path, monkeypatch):
    import torch

    from imgexp.tracking.run_logging import log_to_run_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "csv").mkdir()
    (run / "csv" / "metrics.csv").write_text("epoch,step,val/acc\n0,9,0.5\n1,19,0.75\n")
    loggers = {"csv": {"_target_": "lightning.pytorch.loggers.CSVLogger"},
               "wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger",
                         "project": "imgexp", "mode": "offline"}}
    ckpt = run / "checkpoints" / "best.ckpt"
    torch.save({"imgexp": {"class_names": ["a", "b"], "config": {"logger": loggers},
                           "wandb_run_id": "evaltest1"}}, ckpt)
    done = log_to_run_loggers(ckpt, {"test/acc": 0.875, "test/balanced_acc": 0.5})
    assert done == [str(run / "csv" / "metrics.csv"), "wandb run evaltest1"]
    table = pd.read_csv(run / "csv" / "metrics.csv")
    assert table["val/acc"].tolist()[:2] == [0.5, 0.75]
    assert table.iloc[-1][["step", "test/acc"]].tolist() == [19, 0.875]
    # the offline W&B run resumed under the training run's id holds the new keys
    records = list((run / "wandb").glob("offline-run-*-evaltest1/run-evaltest1.wandb"))
    assert len(records) == 1 and b"test/balanced_acc" in records[0].read_bytes()


def test_eval_metrics_sent_to_the_runs_wandb_print_no_wandb_block(tmp_path, capfd, monkeypatch):
    """imgexp-eval's back-logging printed W&B's banner and ~35-line history/summary block."""
    from imgexp.tracking.run_logging import log_to_wandb

    monkeypatch.delenv("WANDB_SILENT", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    config = {"logger": {"wandb": {"_target_": "imgexp.tracking.wandb_run.WandbLogger",
                                   "project": "imgexp"}}}
    log_to_wandb("evalquiet1", config, {"test/acc": 0.5}, tmp_path)
    out = capfd.readouterr()
    assert "wandb:" not in out.out + out.err
    assert list(tmp_path.glob("wandb/offline-run-*-evalquiet1"))
