import json

import pytest

from imgexp.models import load_model


def test_digits_run_writes_the_run_directory_contract(digits_run):
    metrics = json.loads((digits_run / "metrics.json").read_text())
    info = json.loads((digits_run / "run_info.json").read_text())
    assert (digits_run / "checkpoints" / "best.ckpt").is_file()
    assert (digits_run / "checkpoints" / "last.ckpt").is_file()
    assert (digits_run / "csv" / "metrics.csv").is_file()
    for key in ("test/acc", "test/f1_macro", "val/acc_best", "data/skipped_images"):
        assert key in metrics
    assert metrics["test/acc"] > 0.8  # 3 tiny epochs already learn digits
    assert metrics["data/skipped_images"] == 0
    assert len(info["manifest_hash"]) == 64 and info["seed"] == 42
    assert info["packages"]["torch"] == "2.14.1"
    assert info["wall_time_s"] > 0


def test_checkpoint_alone_rebuilds_the_model(digits_ckpt, digits_run):
    model = load_model(digits_ckpt)
    assert model.class_names == [str(d) for d in range(10)]
    assert model.config["data"]["image_size"] == 16
    assert not model.training


def test_val_acc_best_is_the_best_logged_epoch_not_the_sanity_check(digits_run):
    import pandas as pd

    log = pd.read_csv(digits_run / "csv" / "metrics.csv")
    per_epoch = log.dropna(subset=["val/acc"])
    assert json.loads((digits_run / "metrics.json").read_text())["val/acc_best"] == \
        pytest.approx(per_epoch["val/acc"].max())
