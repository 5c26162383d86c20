"""Descriptors + k-NN head through the ordinary stages: train builds the gallery in one pass,
eval scores it (MMAP@k included), predict sorts, select/app embed with the checkpoint."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.config import compose_config, train_config
from imgexp.eval.pipeline import evaluate_checkpoint
from imgexp.models import load_model

pytestmark = pytest.mark.slow

DESCRIPTORS = ["model/backbone=descriptors", "model/head=knn", "model.backbone.kinds=[color,edge]",
               "data.image_size=16", "model.backbone.color.bins=4",
               "model.backbone.color.slices=2"]


@pytest.fixture(scope="module")
def cbir_run(tmp_path_factory, data_dir) -> Path:
    from imgexp.train.fit import fit_and_test

    run_dir = tmp_path_factory.mktemp("cbir_run")
    fit_and_test(train_config([*DESCRIPTORS, "trainer.max_epochs=5"], run_dir, data_dir))
    return run_dir


def test_train_builds_the_gallery_in_one_pass(cbir_run):
    metrics = json.loads((cbir_run / "metrics.json").read_text())
    assert metrics["epochs"] == 1  # trainer.max_epochs=5 asked for: nothing to learn
    model = load_model(cbir_run / "checkpoints" / "best.ckpt")
    assert model.gallery_only and not list(model.parameters())
    split = pd.read_csv(cbir_run / "data_split.csv")
    assert len(model.gallery_labels) == (split["split"] == "train").sum()
    assert metrics["test/acc"] > 0.8  # digits are told apart by their colour/edge layout


def test_eval_reports_mmap_at_k_next_to_map_at_r(cbir_run, tmp_path):
    ckpt = cbir_run / "checkpoints" / "best.ckpt"
    scores = {}
    for k in (1, 10):
        cfg = compose_config("eval", [f"ckpt_path={ckpt}", "log_to_run=false",
                                      f"eval.knn.mmap_k={k}", "eval.progress=false",
                                      "eval.max_errors=5"], tmp_path / f"k{k}")
        scores[k] = evaluate_checkpoint(cfg)
        assert (tmp_path / f"k{k}" / "confusion_matrix.png").is_file()
    assert scores[10]["test/mmap_k"] == 10
    assert 0 < scores[10]["test/mmap_at_k"] <= 1 and "test/map_at_r" in scores[10]
    # eval.knn.mmap_k is the depth: at depth 1 the AP of a query is its precision@1
    assert scores[1]["test/mmap_at_k"] != scores[10]["test/mmap_at_k"]
    assert scores[1]["test/mmap_at_k"] == pytest.approx(scores[1]["test/precision_at_1"],
                                                        abs=0.05)
    assert scores[10]["test/acc"] == pytest.approx(scores[10]["test/knn_acc"], abs=1e-9)


def test_mmap_depth_is_checked_and_capped_at_the_gallery(cbir_run, tmp_path):
    from imgexp.errors import ImgexpError

    ckpt = cbir_run / "checkpoints" / "best.ckpt"

    def evaluate(k):
        return evaluate_checkpoint(compose_config(
            "eval", [f"ckpt_path={ckpt}", "log_to_run=false", f"eval.knn.mmap_k={k}",
                     "eval.progress=false", "eval.max_errors=5"], tmp_path / str(k)))

    for bad in (0, "abc"):  # was: null in metrics.json / a traceback after the whole pass
        with pytest.raises(ImgexpError, match="eval.knn.mmap_k"):
            evaluate(bad)
    gallery = (pd.read_csv(cbir_run / "data_split.csv")["split"] == "train").sum()
    assert evaluate(100_000)["test/mmap_k"] == gallery  # the depth used, not the one asked


def test_knn_weighted_changes_the_vote(cbir_run, digits_root):
    model = load_model(cbir_run / "checkpoints" / "best.ckpt")
    from imgexp.data.image_io import load_rgb

    paths = sorted((digits_root / "8").glob("*.png"))[:20]
    images = torch.stack([torch.from_numpy(load_rgb(p, 16)).permute(2, 0, 1)
                          for p in paths])
    weighted = model.predict_proba(images)
    model.head.knn_weighted = False
    plain = model.predict_proba(images)
    assert not torch.allclose(weighted, plain)
    # unweighted votes are multiples of 1/k
    assert torch.allclose(plain * model.head.knn_k, (plain * model.head.knn_k).round(), atol=1e-5)


def test_predict_sorts_into_class_folders(cbir_run, digits_root, tmp_path):
    from imgexp.predict.pipeline import predict_folder

    cfg = compose_config("predict", [f"ckpt_path={cbir_run / 'checkpoints' / 'best.ckpt'}",
                                     f"input={digits_root / '3'}", f"output={tmp_path / 'out'}",
                                     "predict.unknown_threshold=null", "predict.num_workers=0",
                                     "predict.progress=false"], tmp_path / "run")
    summary = predict_folder(cfg)
    table = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype=str)
    assert summary["n_predicted"] == len(list((digits_root / "3").glob("*.png")))
    assert (table["predicted"] == "3").mean() > 0.8
    assert len(list((tmp_path / "out" / "3").glob("*.png"))) == (table["predicted"] == "3").sum()


def test_checkpoint_is_a_feature_extractor_for_select_and_the_app(cbir_run, digits_root,
                                                                  tmp_path):
    from imgexp.features.extractor import FeatureExtractor, extract_features

    ckpt = cbir_run / "checkpoints" / "best.ckpt"
    extractor = FeatureExtractor.from_checkpoint(ckpt, device="cpu", precision="fp32")
    paths = sorted((digits_root / "5").glob("*.png"))[:12]
    features, stats = extract_features(paths, extractor, cache_dir=tmp_path / "cache",
                                       progress=False)
    assert stats["computed"] == 12 and np.isfinite(features).all()
    model = load_model(ckpt)
    assert features.shape[1] == model.backbone.num_features
    again, stats = extract_features(paths, extractor, cache_dir=tmp_path / "cache",
                                    progress=False)
    assert stats["cached"] == 12 and np.array_equal(features, again)
