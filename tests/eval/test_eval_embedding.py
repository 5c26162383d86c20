"""imgexp-eval / imgexp-predict on an embedding (triplet) checkpoint: k-NN over its gallery."""

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers.config import compose_config, train_config
from helpers.eval import write_unseen_images
from imgexp.eval.pipeline import evaluate_checkpoint
from imgexp.predict.pipeline import predict_folder, validation_threshold

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def triplet_run(tmp_path_factory, data_dir) -> Path:
    from imgexp.train.fit import fit_and_test

    run_dir = tmp_path_factory.mktemp("triplet_run")
    cfg = train_config(["experiment=digits_triplet", "trainer.max_epochs=3",
                        "data.image_size=16", "model.backbone.channels=[16,32]",
                        "model.head.dim=32"],
                       run_dir, data_dir)
    fit_and_test(cfg)
    return run_dir


@pytest.fixture(scope="module")
def triplet_eval(triplet_run, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("triplet_eval")
    cfg = compose_config("eval", [f"ckpt_path={triplet_run / 'checkpoints' / 'best.ckpt'}",
                                  "log_to_run=false"], out)
    return out, evaluate_checkpoint(cfg)


def test_embedding_eval_reports_retrieval_and_matches_training(triplet_run, triplet_eval):
    out, metrics = triplet_eval
    trained = json.loads((triplet_run / "metrics.json").read_text())
    # the checkpoint's gallery is the train split embedded by the same weights, so the
    # k-NN vote of predict_proba and the freshly computed k-NN accuracy agree
    assert metrics["test/acc"] == pytest.approx(metrics["test/knn_acc"], abs=1e-9)
    for key in ("test/acc", "test/precision_at_1", "test/map_at_r"):
        assert metrics[key] == pytest.approx(trained[key], abs=1e-4), key
    assert 0 < metrics["test/map_at_r"] <= metrics["test/retrieval_map"] <= 1
    assert "test/log_loss" not in metrics and "test/ece" not in metrics
    assert not (out / "reliability.png").exists()  # no softmax: no calibration to draw


def test_embedding_error_report_shows_nearest_gallery_images(triplet_eval):
    out, _ = triplet_eval
    page = (out / "errors" / "errors.html").read_text()
    predictions = pd.read_csv(out / "predictions.csv", dtype=str)
    n_wrong = int((predictions["label"] != predictions["predicted"]).sum())
    assert page.count("<figure>") == 3 * n_wrong  # eval.neighbours=3 per error
    assert "nearest gallery images" in page


def test_embedding_predict_sends_unseen_images_to_unknown(triplet_run, tmp_path):
    inputs = write_unseen_images(tmp_path / "in")[0].parent
    cfg = compose_config("predict", [f"ckpt_path={triplet_run / 'checkpoints' / 'best.ckpt'}",
                                     f"input={inputs}", f"output={tmp_path / 'out'}",
                                     "predict.num_workers=0", "threshold_for_frr=0.05"],
                         tmp_path / "run")
    found = validation_threshold(cfg)
    assert found["ood"] == "nearest" and found["rejected"] <= 0.05
    cfg.predict.unknown_threshold = found["threshold"]
    summary = predict_folder(cfg)
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert (table["unknown"] == (table["score_nearest"] < found["threshold"])).all()
    assert summary["n_unknown"] > 0.5 * summary["n_predicted"]


def test_error_budget_compares_the_embedding_heads_scores(triplet_run, digits_root, tmp_path):
    """predict.max_error with score=auto on a k-NN head: softmax and nearest are compared."""
    cfg = compose_config("predict", [f"ckpt_path={triplet_run / 'checkpoints' / 'best.ckpt'}",
                                     f"input={digits_root / '3'}", f"output={tmp_path / 'out'}",
                                     "predict.max_error=0.1", "predict.score=auto",
                                     "predict.num_workers=0", "predict.progress=false"],
                         tmp_path / "run")
    budget = predict_folder(cfg)["error_budget"]
    assert set(budget["scores_compared"]) == {"softmax", "nearest"}
    assert budget["score"] in budget["scores_compared"] and budget["n_calibration"] == 270
