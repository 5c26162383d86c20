"""A resume takes the run's own config: `imgexp-train ckpt_path=RUN/checkpoints/last.ckpt`
alone (the README's command) trains on the run's data, model and schedule, not the defaults;
an override that would change them is refused in one line before anything in RUN is written;
more epochs are allowed and said to re-plan the schedule; run_info.json's wall time totals the
run's processes."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from helpers.config import train_config
from helpers.images import class_folders
from imgexp.errors import ImgexpError
from imgexp.paths import CONFIG_DIR

TESTS = Path(__file__).parents[1]
# not the default recipe: photos in class folders at 16 px, a smaller CNN, 2 epochs
RUN = ["data=folder", "data.image_size=16", "data.num_workers=0", "model.backbone.channels=[8,16]",
       "model.backbone.dense_units=32", "trainer.max_epochs=2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir) -> Path:
    from imgexp.train.fit import fit_and_test

    tmp = tmp_path_factory.mktemp("resume_config")
    images = class_folders(tmp / "images", {"a": 15, "b": 15, "c": 15}, size=16)
    fit_and_test(train_config([*RUN, f"data.root={images}"], tmp / "run", data_dir))
    # as trained: the slow tests resume the run itself
    shutil.copy(tmp / "run" / "checkpoints" / "last.ckpt", tmp / "first.ckpt")
    return tmp / "run"


def imgexp_train(*overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")]), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "imgexp.train", *overrides],
                          capture_output=True, text=True, env=env, timeout=600)


def files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def resumed(ckpt: Path, launch: Path, *overrides: str):
    """The config a resume would run, composed in-process as the command line does."""
    from imgexp.train.resume import resumed_config

    cfg = train_config([f"ckpt_path={ckpt}", *overrides], launch, launch)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return resumed_config(cfg)


@pytest.mark.slow
def test_ckpt_path_alone_trains_on_with_the_runs_config(run, tmp_path):
    split = (run / "data_split.csv").read_bytes()
    # a long first process: the resumed run's wall time must include the time it spent
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["callbacks"]["WallTime"]["wall_time_s"] = 1000.0
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")

    proc = imgexp_train(f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=3",
                        f"hydra.run.dir={tmp_path / 'launch'}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"Training on {run.parent / 'images'}:" in out  # not the built-in digits
    assert "on top: trainer.max_epochs=3" in out and "re-planned over 3 epochs" in out
    assert (run / "data_split.csv").read_bytes() == split
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["imgexp"]["config"]["data"]["image_size"] == 16
    assert json.loads((run / "run_info.json").read_text())["wall_time_s"] > 1000
    assert last["callbacks"]["WallTime"]["wall_time_s"] > 1000  # for a run killed after it
    # the launch folder records the config the resume ran, not the defaults Hydra composed
    launched = OmegaConf.load(tmp_path / "launch" / ".hydra" / "config.yaml")
    assert launched.data.image_size == 16 and launched.trainer.max_epochs == 3


def test_a_finished_run_is_not_resumed(run, tmp_path):
    """Resuming a finished run only tested it again and stripped metrics.json of its
    train/val figures (found by the stranger)."""
    ckpt = run / "checkpoints" / "last.ckpt"
    with pytest.raises(ImgexpError, match="ends a finished run .* add epochs"):
        resumed(ckpt, tmp_path / "launch")


@pytest.mark.slow
def test_an_override_changing_the_data_is_one_line_and_writes_nothing(run, tmp_path):
    before = files(run)
    proc = imgexp_train(f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "data.image_size=32",
                        f"hydra.run.dir={tmp_path / 'launch'}")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: data.image_size=32 would change data.image_size of the resumed run (16 -> 32)")
    assert "Traceback" not in proc.stdout + proc.stderr
    assert files(run) == before


@pytest.mark.parametrize(("override", "key"), [
    ("model.backbone.dense_units=64", "model.backbone.dense_units"),
    ("model/head=embedding", "model.head"),
    ("scheduler=cosine", "scheduler._target_"),
    ("optimizer.lr=0.1", "optimizer.lr"),
    ("seed=1", "seed"),
    ("augmentation=light", "augmentation"),
    ("+trainer.limit_train_batches=1", "trainer.limit_train_batches"),
    ("trainer.precision=bf16-mixed", "trainer.precision"),
    ("callbacks.ema.enabled=true", "callbacks.ema.enabled"),
    ("~callbacks.ema", "callbacks.ema"),
    ("+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping", "callbacks.stop"),
    ("experiment=corel_cnn", "augmentation"),
])
def test_an_override_changing_model_or_schedule_is_refused_naming_it(run, tmp_path, override, key):
    with pytest.raises(ImgexpError, match=rf"^{re.escape(override)} would change {key}"):
        resumed(run.parent / "first.ckpt", tmp_path, override)


def test_fewer_epochs_are_refused_and_repeating_the_runs_values_is_no_change(run, tmp_path):
    last = run.parent / "first.ckpt"
    with pytest.raises(ImgexpError, match="trainer.max_epochs=1: the resumed run was planned "
                                          "for 2 epochs"):
        resumed(last, tmp_path, "trainer.max_epochs=1")
    # the run's own values again change nothing (more epochs: a finished run is not resumed)
    cfg = resumed(last, tmp_path, *RUN, "trainer.max_epochs=3",
                  f"data.root={run.parent / 'images'}")
    assert cfg.data.image_size == 16 and cfg.trainer.max_epochs == 3


def test_harmless_overrides_apply_and_a_bare_checkpoint_keeps_its_config(run, tmp_path):
    bare = shutil.copy(run.parent / "first.ckpt", tmp_path / "model.ckpt")
    cfg = resumed(bare, tmp_path / "launch", "logger=default", "~callbacks.lr_monitor",
                  "data.cache=none", "trainer.max_epochs=4",
                  "+callbacks.kill._target_=helpers.resume.KillAt")
    assert cfg.data.root == str(run.parent / "images") and cfg.model.backbone.dense_units == 32
    assert "wandb" in cfg.logger and "lr_monitor" not in cfg.callbacks and cfg.data.cache == "none"
    assert cfg.callbacks.kill._target_ == "helpers.resume.KillAt"
    assert cfg.trainer.max_epochs == 4 and cfg.ckpt_path == str(bare)
    # outside a run folder it writes where it was launched, not into the run it came from
    assert cfg.callbacks.model_checkpoint.dirpath == str(tmp_path / "launch" / "checkpoints")
