"""Training behaviour: the default experiment's bar, determinism, resume, trainer switches,
and the bad inputs of the foundation issue."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import train_config
from imgexp.errors import ImgexpError
from imgexp.fit import fit_and_test
from imgexp.models.factory import read_checkpoint

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
    _run(tmp_path / "first", data_dir, ["trainer.max_epochs=2", "callbacks.ema.enabled=true"])
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    saved = read_checkpoint(last)
    assert saved["epoch"] == 1 and saved["lr_schedulers"][0]["last_epoch"] > 0
    metrics = _run(tmp_path / "second", data_dir, ["trainer.max_epochs=3",
                                                   "callbacks.ema.enabled=true",
                                                   f"ckpt_path={last}"])
    assert metrics["epochs"] == 3
    resumed = read_checkpoint(tmp_path / "second" / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == saved["global_step"] * 3 // 2
    # the OneCycle schedule continued: 3 epochs' steps in total, not restarted
    assert resumed["lr_schedulers"][0]["last_epoch"] == resumed["global_step"]
    logged = (tmp_path / "second" / "csv" / "metrics.csv").read_text().splitlines()
    assert len(logged) > 1


def test_resume_continues_the_same_wandb_run(tmp_path, data_dir):
    _run(tmp_path / "first", data_dir, ["trainer.max_epochs=1", "logger=wandb"])
    first_id = read_checkpoint(tmp_path / "first/checkpoints/last.ckpt")["imgexp"]["wandb_run_id"]
    assert first_id
    _run(tmp_path / "second", data_dir, ["trainer.max_epochs=2", "logger=wandb",
                                         f"ckpt_path={tmp_path / 'first/checkpoints/last.ckpt'}"])
    second = read_checkpoint(tmp_path / "second/checkpoints/last.ckpt")["imgexp"]
    assert second["wandb_run_id"] == first_id
    assert list((tmp_path / "second" / "wandb").glob(f"offline-run-*-{first_id}"))


def test_ema_weights_are_what_gets_checkpointed(tmp_path, data_dir):
    _run(tmp_path, data_dir, ["trainer.max_epochs=1", "callbacks.ema.enabled=true",
                              "callbacks.ema.decay=0.5"])
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    ema_state = next(v for k, v in ckpt["callbacks"].items() if "EMA" in k)
    assert ema_state  # the averaged model travels with the checkpoint for resume


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
                                                "data.ratios=[1,1,1]"])
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
