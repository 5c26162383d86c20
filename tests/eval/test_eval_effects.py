"""Effect tests for the options of imgexp-eval (README "Evaluating and predicting"): two eval
runs of the small digits checkpoint, one with the defaults and one with every option moved,
and what each option is said to change."""

import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from helpers.config import compose_config
from imgexp.eval.pipeline import evaluate_checkpoint, knn_settings
from imgexp.models.factory import load_model


def _eval(tmp_path, ckpt, *overrides):
    out = tmp_path / "_".join(o.split("=")[0].split(".")[-1] for o in overrides)[-60:]
    cfg = compose_config("eval", [f"ckpt_path={ckpt}", "log_to_run=false", "device=cpu",
                                  *overrides], out)
    return evaluate_checkpoint(cfg), out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits_ckpt):
    tmp = tmp_path_factory.mktemp("eval_effects")
    default = _eval(tmp, digits_ckpt)
    moved = _eval(tmp, digits_ckpt, "split=val", "eval.top_k=[2]", "eval.calibration_bins=1",
                  "eval.retrieval=true", "eval.max_errors=1", "eval.neighbours=0")
    return default, moved


def _errors_shown(out) -> int:
    return len(list((out / "errors" / "images").glob("*")))


def test_split_picks_the_images_evaluated(runs, digits_run):
    (default, out_a), (moved, out_b) = runs
    split = pd.read_csv(digits_run / "data_split.csv")
    assert default["test/n_images"] == (split["split"] == "test").sum()
    assert moved["val/n_images"] == (split["split"] == "val").sum()
    assert not any(k.startswith("test/") for k in moved)
    evaluated = {p.split("/digits/")[1] for p in pd.read_csv(out_b / "predictions.csv")["path"]}
    assert evaluated == set(split.loc[split["split"] == "val", "path"])


def test_top_k_sets_the_reported_top_k_accuracies(runs):
    (default, _), (moved, _) = runs
    assert {"test/top3_acc", "test/top5_acc"} <= set(default)
    assert "val/top2_acc" in moved and "val/top3_acc" not in moved
    assert moved["val/top2_acc"] >= moved["val/acc"]


def _binned_ece(out, bins: int) -> float:
    """ECE by hand from predictions.csv: equal-width confidence bins, weighted |conf - acc|."""
    table = pd.read_csv(out / "predictions.csv")
    conf = table["confidence"].to_numpy()
    hit = (table["label"] == table["predicted"]).to_numpy()
    which = np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], conf, side="left")
    return sum(abs(conf[which == b].mean() - hit[which == b].mean()) * (which == b).mean()
               for b in np.unique(which))


def test_calibration_bins_set_the_ece_binning(runs):
    (default, out_a), (moved, out_b) = runs
    # one bin: |mean confidence - accuracy|; 15 bins (default) is the finer number. A model
    # whose confidences all fall in one of 15 bins gives both the same value: each run is
    # checked against its own binning, computed by hand
    assert moved["val/ece"] == pytest.approx(_binned_ece(out_b, 1), abs=1e-5)
    assert default["test/ece"] == pytest.approx(_binned_ece(out_a, 15), abs=1e-5)
    if _binned_ece(out_b, 15) != pytest.approx(_binned_ece(out_b, 1), abs=1e-5):
        assert moved["val/ece"] != pytest.approx(_binned_ece(out_b, 15), abs=1e-5)


def test_retrieval_true_adds_retrieval_metrics_to_a_softmax_head(runs):
    (default, _), (moved, _) = runs
    assert "test/knn_acc" not in default and "test/retrieval_map" not in default
    assert {"val/knn_acc", "val/precision_at_1", "val/map_at_r", "val/retrieval_map"} <= set(moved)


def test_max_errors_and_neighbours_bound_the_error_report(runs):
    (default, out_a), (moved, out_b) = runs
    wrong = (pd.read_csv(out_a / "predictions.csv").eval("label != predicted")).sum()
    assert wrong > 1  # the 3-epoch model errs on several test images...
    assert _errors_shown(out_a) >= wrong  # ...all shown by default (with neighbours: more)
    assert _errors_shown(out_b) == 1  # max_errors=1, neighbours=0: one thumbnail
    assert json.loads((out_b / "metrics.json").read_text()) == moved


def test_knn_k_and_weighted_override_the_heads_vote(digits_ckpt):
    model = load_model(digits_ckpt)
    assert knn_settings(model, OmegaConf.create({"k": None, "weighted": None})) == (5, True)
    assert knn_settings(model, OmegaConf.create({"k": 1, "weighted": False})) == (1, False)
