"""Every config group option and every experiment composes and runs one debug batch, so
configs never rot. GPU presets can only be composed here (no GPU on CI)."""

import json
from pathlib import Path

import pytest

from helpers.config import train_config
from imgexp.paths import CONFIG_DIR
from imgexp.train.fit import fit_and_test


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


CPU_RUNNABLE = [
    ("model/backbone", opt) for opt in _options("model/backbone") if opt != "timm"
] + [("model/backbone", "timm")] + [
    (group, opt)
    for group in ("model/head", "model/loss", "optimizer", "scheduler", "augmentation",
                  "callbacks", "logger")
    for opt in _options(group)
]
# small inputs keep the timm models fast; each option gets the overrides it needs
NEEDS = {
    ("model/backbone", "timm"): ["model.backbone.name=resnet18"],
    ("model/backbone", "resnet50"): ["data.image_size=32"],
    ("model/backbone", "efficientnet_b0"): ["data.image_size=32"],
    # the seed's 'valid' 5x5 convs need at least 72 px
    ("model/backbone", "simple_cnn_corel"): ["data.image_size=72"],
    # an embedding head and a triplet loss only make sense together
    ("model/head", "embedding"): ["model/loss=hard_triplet"],
    ("model/head", "knn"): ["model/loss=hard_triplet"],  # over the trainable simple_cnn
    **{("model/loss", loss): ["model/head=embedding"]
       for loss in ("triplet", "hard_triplet", "ce_triplet", "contrastive")},
}
# recipes that need pretrained weights (no internet here) or big images
EXPERIMENT_NEEDS = {
    "gravure_triplet": ["model.backbone.pretrained=false", "data.image_size=32"],
    "digits_triplet": ["data.samples_per_class=4"],  # P x K in the batch of 8 above
    "digits_siamese": ["data.samples_per_class=4"],
}


def _debug_run(tmp_path: Path, data_dir: Path, overrides: list[str]) -> dict:
    cfg = train_config(["trainer=debug", "data.batch_size=8", *overrides], tmp_path, data_dir)
    metrics = fit_and_test(cfg)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    return metrics


@pytest.mark.parametrize("group,option", CPU_RUNNABLE, ids=lambda x: str(x))
def test_group_option_runs_one_debug_batch(tmp_path, data_dir, group, option):
    overrides = [f"{group}={option}", *NEEDS.get((group, option), [])]
    metrics = _debug_run(tmp_path, data_dir, overrides)
    assert 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_experiment_runs_one_debug_batch(tmp_path, data_dir, digits_root, experiment):
    metrics = _debug_run(tmp_path, data_dir, [f"experiment={experiment}",
                                              f"data.root={digits_root}",
                                              *EXPERIMENT_NEEDS.get(experiment, [])])
    assert "test/acc" in metrics


@pytest.mark.parametrize("data", _options("data"))
def test_data_options_compose(tmp_path, data_dir, digits_root, data):
    cfg = train_config([f"data={data}", f"data.root={digits_root}",
                        f"data.manifest={tmp_path / 'm.csv'}"], tmp_path, data_dir)
    assert cfg.data._target_ == "imgexp.data.ImageDataModule"
    assert {"root", "manifest", "image_size", "batch_size", "num_workers"} <= set(cfg.data)


def test_folder_data_runs_on_a_folder(tmp_path, data_dir, digits_root):
    metrics = _debug_run(tmp_path, data_dir, ["data=folder", f"data.root={digits_root}",
                                              "data.image_size=16", "data.num_workers=0"])
    assert metrics["data/skipped_images"] == 0


@pytest.mark.parametrize("trainer,accelerator,precision", [
    ("cpu", "cpu", "32-true"), ("gpu", "gpu", "bf16-mixed"), ("ddp", "gpu", "bf16-mixed"),
    ("debug", "cpu", "32-true")])
def test_trainer_presets_compose(tmp_path, data_dir, trainer, accelerator, precision):
    cfg = train_config([f"trainer={trainer}"], tmp_path, data_dir)
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == (accelerator, precision)
    assert cfg.trainer.get("strategy", "auto") == ("ddp" if trainer == "ddp" else "auto")


def test_the_task_sets_monitor_and_sampler_in_one_place(tmp_path, data_dir):
    """task=metric (which model/head=embedding picks) moves the checkpoint monitor, what sweeps
    optimise and the P x K sampler together; task=classification is the softmax default."""
    def settings(cfg):
        return (cfg.monitor, cfg.callbacks.model_checkpoint.monitor, cfg.optimized_metric,
                cfg.data.sampler)

    softmax = ("val/acc", "val/acc", "val/acc_best", None)
    metric = ("val/precision_at_1", "val/precision_at_1", "val/precision_at_1_best", "pk")
    assert settings(train_config([], tmp_path, data_dir)) == softmax
    assert settings(train_config(["task=metric"], tmp_path, data_dir)) == metric
    assert settings(train_config(["model/head=embedding", "model/loss=hard_triplet"], tmp_path,
                                 data_dir)) == metric
    assert settings(train_config(["experiment=digits_triplet", "data.sampler=balanced"],
                                 tmp_path, data_dir))[-1] == "balanced"  # the user still wins
