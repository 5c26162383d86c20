"""Training behaviour: the default experiment's bar, determinism, resume, trainer switches,
and the bad inputs of the foundation issue."""

import csv
import json
import subprocess
import sys
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from helpers.config import compose_config, train_config
from imgexp.data.build import build_datamodule
from imgexp.errors import ImgexpError
from imgexp.eval.pipeline import evaluate_checkpoint
from imgexp.models import build_model
from imgexp.models.factory import load_model, read_checkpoint
from imgexp.train.fit import fit_and_test
from imgexp.training.ema import EMA

TINY = ["data.image_size=16", "model.backbone.channels=[8,16]", "model.backbone.dense_units=32"]
VOLATILE = {"best_model_path", "lr-Adam"}


def _run(tmp_path, data_dir, overrides):
    return fit_and_test(train_config([*TINY, *overrides], tmp_path, data_dir))


@pytest.mark.slow
def test_default_experiment_reaches_its_accuracy_bar(tmp_path, data_dir):
    cfg = train_config([], tmp_path, data_dir)  # experiment=digits_cnn, as `make train`
    assert cfg.trainer.max_epochs == 12 and cfg.data.image_size == 32
    metrics = fit_and_test(cfg)
    assert metrics["test/acc"] >= 0.95
    assert metrics["epochs"] == 12


def test_two_deterministic_runs_give_identical_metrics(tmp_path, data_dir):
    overrides = ["trainer.max_epochs=2", "trainer.deterministic=true"]
    one = _run(tmp_path / "a", data_dir, overrides)
    two = _run(tmp_path / "b", data_dir, overrides)
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE}  # noqa: E731
    assert strip(one) == strip(two)
    assert one["test/acc"] > 0.3


def test_resume_from_last_checkpoint_continues_the_run(tmp_path, data_dir):
    """Resumed from RUN/checkpoints/last.ckpt (launched from another folder), the run continues
    in RUN: the OneCycle position, the best score, best.ckpt and the earlier CSV rows."""
    first = _run(tmp_path / "run", data_dir, ["trainer.max_epochs=2", "callbacks.ema.enabled=true"])
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = read_checkpoint(last)
    assert saved["epoch"] == 1 and saved["lr_schedulers"][0]["last_epoch"] > 0
    assert saved["imgexp"]["best"]["val/acc_best"] == pytest.approx(first["val/acc_best"])
    rows_before = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()
    cfg = train_config([*TINY, "trainer.max_epochs=3", "callbacks.ema.enabled=true",
                        f"ckpt_path={last}"], tmp_path / "launch", data_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = fit_and_test(cfg)
    # nothing is deleted and the checkpoints are expected there: Lightning's warnings would lie
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "will be deleted" in m or "Checkpoint directory" in m], said
    assert metrics["epochs"] == 3
    assert metrics["best_model_path"] == str(tmp_path / "run" / "checkpoints" / "best.ckpt")
    resumed = read_checkpoint(last)
    assert resumed["global_step"] == saved["global_step"] * 3 // 2
    # the OneCycle schedule continued: 3 epochs' steps in total, not restarted
    assert resumed["lr_schedulers"][0]["last_epoch"] == resumed["global_step"]
    with (tmp_path / "run" / "csv" / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    val_acc = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert len(val_acc) == 3 and len(rows) > len(rows_before) - 1  # epochs 0-1 kept
    assert metrics["val/acc_best"] == pytest.approx(max(val_acc))
    assert float([r for r in rows if r.get("val/acc_best")][-1]["val/acc_best"]) == \
        pytest.approx(max(val_acc))


def test_best_score_is_restored_from_the_checkpoint(digits_ckpt):
    model = load_model(digits_ckpt)
    model.on_load_checkpoint({"imgexp": {"best": {"val/acc_best": 0.75}}})
    model.val_acc_best.update(torch.tensor(0.5))
    assert float(model.val_acc_best.compute()) == 0.75


def test_resume_continues_the_same_wandb_run(tmp_path, data_dir):
    _run(tmp_path / "run", data_dir, ["trainer.max_epochs=1", "logger=wandb"])
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    first_id = read_checkpoint(last)["imgexp"]["wandb_run_id"]
    assert first_id
    _run(tmp_path / "launch", data_dir, ["trainer.max_epochs=2", "logger=wandb",
                                         f"ckpt_path={last}"])
    second = read_checkpoint(last)
    assert second["epoch"] == 1 and second["imgexp"]["wandb_run_id"] == first_id
    assert len(list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{first_id}"))) == 2


def _eval(ckpt, out_dir) -> dict:
    cfg = compose_config("eval", [f"ckpt_path={ckpt}", "log_to_run=false"], out_dir)
    return evaluate_checkpoint(cfg)


@pytest.mark.parametrize("overrides", [[], ["experiment=digits_triplet", *TINY,
                                            "callbacks.progressive_unfreezing.unfreeze_at=[0]"]],
                         ids=["softmax", "embedding"])
def test_ema_weights_are_what_validation_test_and_eval_use(tmp_path, data_dir, overrides):
    """val, the test after fitting, best.ckpt and imgexp-eval all use the averaged weights."""
    metrics = _run(tmp_path / "run", data_dir, [
        *overrides, "trainer.max_epochs=2", "+trainer.limit_train_batches=6",
        "callbacks.ema.enabled=true", "callbacks.ema.decay=0.9"])
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt")
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    weights = [k for k in raw if k.startswith("backbone.") and raw[k].is_floating_point()]
    assert any(not torch.equal(averaged[k], raw[k]) for k in weights)
    evaluated = _eval(tmp_path / "run" / "checkpoints" / "best.ckpt", tmp_path / "eval")
    key = "test/knn_acc" if overrides else "test/loss"
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    if key in evaluated:
        assert evaluated[key] == pytest.approx(metrics[key], rel=1e-5)
    if not overrides:  # a model rebuilt from best.ckpt gives the logged test loss
        model = load_model(tmp_path / "run" / "checkpoints" / "best.ckpt")
        assert torch.equal(model.state_dict()["backbone.features.0.weight"],
                           averaged["backbone.features.0.weight"])


def test_ema_warmup_follows_the_trained_weights_in_a_short_run(tmp_path, data_dir):
    """decay 0.999 over 8 steps: without warm-up the average stays near the initial weights,
    with it (timm's ramp) it is near the trained ones."""
    ema = EMA(decay=0.999)
    assert ema.decay_at(0) == 0 and ema.decay_at(7) < 0.8 and ema.decay_at(10**6) == 0.999
    assert EMA(decay=0.999, warmup=False).decay_at(0) == 0.999

    def distances(warmup: bool) -> tuple[float, float]:
        cfg = train_config([*TINY, "trainer.max_epochs=1", "+trainer.limit_train_batches=8",
                            "callbacks.ema.enabled=true", "callbacks.ema.decay=0.999",
                            f"callbacks.ema.warmup={warmup}", "optimizer.lr=0.01",
                            "scheduler=none", "test=false"], tmp_path / str(warmup), data_dir)
        L.seed_everything(cfg.seed)  # the initial weights fit_and_test will start from
        datamodule = build_datamodule(cfg)
        datamodule.resolve()
        init = build_model(cfg, datamodule.classes, datamodule.train_labels()).state_dict()
        fit_and_test(cfg)
        ckpt = read_checkpoint(tmp_path / str(warmup) / "checkpoints" / "last.ckpt")
        averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
        keys = [k for k in raw if k.startswith("backbone.") and k.endswith("weight")]
        dist = lambda a, b: sum(float((a[k] - b[k]).norm()) for k in keys)  # noqa: E731
        assert dist(raw, init) > 0
        return dist(averaged, raw), dist(averaged, init)

    to_raw, to_init = distances(warmup=True)
    assert to_raw < to_init
    to_raw, to_init = distances(warmup=False)
    assert to_init < to_raw


@pytest.mark.parametrize("overrides", [
    ["model.mixup.enabled=true", "model.mixup.cutmix_alpha=1.0"],
    ["model.channels_last=true", "trainer.gradient_clip_val=1.0"],
    ["model.loss.label_smoothing=0.1", "model.loss.class_weights=balanced"],
    ["data.sampler=balanced", "data.cache=ram", "scheduler=cosine"],
])
def test_trainer_switches_train_to_a_useful_model(tmp_path, data_dir, overrides):
    metrics = _run(tmp_path, data_dir, ["trainer.max_epochs=2", *overrides])
    assert metrics["test/acc"] > 0.5


def test_nan_loss_stops_with_the_step_and_the_cause(tmp_path, data_dir):
    with pytest.raises(ImgexpError, match=r"loss is nan at step \d+ .*learning rate"):
        _run(tmp_path, data_dir, ["optimizer=sgd", "optimizer.lr=1e12", "scheduler=none",
                                  "trainer.max_epochs=1"])


def test_one_class_folder_is_refused_in_one_line(tmp_path, data_dir):
    root = tmp_path / "one" / "cat"
    root.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / f"{i}.png")
    with pytest.raises(ImgexpError, match="one class"):  # was torchmetrics' traceback
        fit_and_test(train_config(["data=folder", f"data.root={root.parent}",
                                   "trainer=debug"], tmp_path / "run", data_dir))


def test_checkpoint_with_other_classes_is_refused(tmp_path, data_dir, digits_ckpt):
    root = tmp_path / "two_classes"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / label / f"{i}.png")
    with pytest.raises(ImgexpError, match="trained on classes"):
        _run(tmp_path / "run", data_dir, ["data=folder", f"data.root={root}",
                                          f"ckpt_path={digits_ckpt}"])


def test_unreadable_training_images_are_counted_not_fatal(tmp_path, data_dir, digits_root):
    root = tmp_path / "digits_copy"
    for label in ("0", "1"):
        (root / label).mkdir(parents=True)
        for src in sorted((digits_root / label).glob("*.png"))[:20]:
            (root / label / src.name).write_bytes(src.read_bytes())
    (root / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but cut here")
    metrics = _run(tmp_path / "run", data_dir, ["data=folder", f"data.root={root}",
                                                "data.num_workers=0", "trainer.max_epochs=1",
                                                "data.ratios=[0.34,0.33,0.33]"])
    assert metrics["data/skipped_images"] == 1


def _cli(*overrides: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgexp.train", *overrides, "logger=csv",
                           f"hydra.run.dir={cwd}"], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.mark.parametrize("overrides,message", [
    (["data=folder", "data.root=/nonexistent/images"], "data root /nonexistent/images does not"),
    (["model/backbone=nope"], "Could not find 'model/backbone/nope'"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, overrides, message):
    out = _cli(*overrides, cwd=tmp_path)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_module_entry_point_trains_and_reports(tmp_path, data_dir):
    out = _cli(*TINY, "trainer.max_epochs=1", f"paths.data_dir={data_dir}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"run directory: {tmp_path}" in out.stdout
    assert "test/acc = " in out.stdout and "checkpoints/best.ckpt" in out.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert np.isclose(float(out.stdout.split("test/acc = ")[1].split()[0]), metrics["test/acc"],
                      atol=1e-4)
    assert torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)["imgexp"]
