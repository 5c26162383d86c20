"""Resume = uninterrupted, to the last digit, for the presets' own recipes (augmentation,
dropout, the data's default loader workers): each `experiment=` preset, on digits, a folder and
a manifest, SIGKILLed at an epoch end or mid-epoch and resumed from last.ckpt, ends with the
metrics.json, csv/metrics.csv rows and weights of the same run left alone (compared with ==),
and its run_info.json counts the wall time spent before the kill.
Only sizes and lengths are overridden, never the augmentation or the dropout.
"""

import json
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers.images import class_folders
from helpers.resume import csv_rows, kill_at, launch

SMALL = ["data.image_size=16", "trainer.max_epochs=3", "trainer.enable_progress_bar=false",
         "~callbacks.progress_bar", "logger=csv", "trainer.log_every_n_steps=1"]
# the digits at batch 64: 19 full train batches, the 41 images left over dropped
DIGITS = ["model.backbone.channels=[8,16]", "model.backbone.dense_units=32"]
# 80 images in 5 classes of 24..8: 56 train images at batch 16, 8 dropped; loader workers
# as the data's defaults (2)
COUNTS = {"a": 24, "b": 20, "c": 16, "d": 12, "e": 8}
CASES = {
    # the default recipe (experiment=digits_cnn): Affine augmentation, dropout 0.25, OneCycle
    "digits_cnn-epoch_end": (["experiment=digits_cnn", *DIGITS], "digits", kill_at(2)),
    "digits_cnn-mid_epoch": (["experiment=digits_cnn", *DIGITS,
                              "callbacks.last_checkpoint.every_n_train_steps=5"],
                             "digits", kill_at(1, batch=7)),  # last.ckpt at step 25
    # flips + affine, block and dense dropout 0.5, class weights, early stopping
    "tounum_cnn-folder-epoch_end": (["experiment=tounum_cnn"], "folder", kill_at(2)),
    "tounum_cnn-manifest-epoch_end": (["experiment=tounum_cnn", "data=manifest"], "manifest",
                                      kill_at(2)),
    # metric learning: P x K batches with oversampled small classes, elastic/geometric
    # augmentation, EfficientNet's dropout and drop-path, progressive unfreezing
    "gravure_triplet-folder-mid_epoch": (["experiment=gravure_triplet",
                                          "model.backbone.pretrained=false",
                                          "callbacks.progressive_unfreezing.unfreeze_at=[1,2]",
                                          "callbacks.last_checkpoint.every_n_train_steps=2"],
                                         "folder", kill_at(1, batch=1)),
    # the digits' metric-learning presets: P x K batches, hard triplets / contrastive pairs,
    # progressive unfreezing at epochs 1 and 2
    "digits_triplet-epoch_end": (["experiment=digits_triplet", *DIGITS], "digits", kill_at(2)),
    "digits_siamese-epoch_end": (["experiment=digits_siamese", *DIGITS], "digits", kill_at(2)),
    # the document seed's Corel recipe: no augmentation, its own CNN's dropout
    "corel_cnn-folder-epoch_end": (["experiment=corel_cnn", "data.image_size=96",
                                    "model.backbone.channels=[8,8,8,8]"], "folder",
                                    kill_at(2)),
    # (corel_cbir learns nothing: one pass builds its gallery, there is no run to resume)
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return class_folders(tmp_path_factory.mktemp("photos"), COUNTS)


def data_overrides(kind: str, data_dir: Path, photos: Path, run_dir: Path) -> list[str]:
    if kind == "digits":
        return [f"paths.data_dir={data_dir}"]
    if kind == "folder":
        return [f"data.root={photos}"]
    # the same files, half of each class for training: 40 images at batch 16, 8 dropped
    manifest = run_dir / "manifest.csv"
    rows = [(f"{label}/{i}.png", label, ("train", "train", "val", "test")[i % 4])
            for label, n in COUNTS.items() for i in range(n)]
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(manifest, index=False)
    return [f"data.manifest={manifest}", f"data.root={photos}"]


def strip(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "best_model_path"}


def final_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_preset_killed_and_resumed_ends_as_the_uninterrupted_run(tmp_path, data_dir, photos,
                                                                    case):
    overrides, kind, kill = CASES[case]
    overrides = [*SMALL, *overrides, *data_overrides(kind, data_dir, photos, tmp_path)]
    alone = launch(tmp_path / "alone", *overrides)
    assert alone.returncode == 0, alone.stderr[-3000:]
    split = pd.read_csv(tmp_path / "alone" / "data_split.csv")
    cfg = (tmp_path / "alone" / ".hydra" / "config.yaml").read_text()
    batch = int(cfg.split("batch_size: ")[1].split()[0])
    assert (split["split"] == "train").sum() % batch, "a partial last batch (dropped unless P x K)"

    run = tmp_path / "run"
    killed = launch(run, *overrides, *kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    killed_ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    spent = killed_ckpt["callbacks"].get("WallTime", {}).get("wall_time_s", 0)
    began = time.perf_counter()
    resumed = launch(tmp_path / "launch", *overrides,
                     f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    took = time.perf_counter() - began
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    assert strip(json.loads((run / "metrics.json").read_text())) == \
        strip(json.loads((tmp_path / "alone" / "metrics.json").read_text()))
    assert csv_rows(run) == csv_rows(tmp_path / "alone")
    # run_info's wall time: the killed process's up to its checkpoint + the resumed process's
    wall = json.loads((run / "run_info.json").read_text())["wall_time_s"]
    assert 0 < spent < wall <= spent + took
    assert same_weights(final_weights(run), final_weights(tmp_path / "alone"))


@pytest.mark.slow
def test_a_checkpoint_after_an_epochs_last_batch_resumes_into_a_full_next_epoch(tmp_path,
                                                                                data_dir):
    """last.ckpt saved by every_n_train_steps at the epoch's last batch holds a loader position
    with every batch drawn but not "finished" (the dropped partial batch is still left): loaded,
    the next epoch had no batches. The weights must end as the uninterrupted run's."""
    overrides = [*SMALL, "experiment=digits_cnn", *DIGITS, f"paths.data_dir={data_dir}",
                 "callbacks.last_checkpoint.every_n_train_steps=19"]  # 19 batches an epoch
    assert launch(tmp_path / "alone", *overrides).returncode == 0
    assert launch(tmp_path / "run", *overrides, *kill_at(2)).returncode == -signal.SIGKILL
    assert launch(tmp_path / "launch", *overrides,
                  f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}").returncode == 0
    assert same_weights(final_weights(tmp_path / "run"), final_weights(tmp_path / "alone"))
