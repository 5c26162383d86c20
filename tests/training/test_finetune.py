"""Progressive unfreezing under OneCycle: trainable parameters per epoch, each group's LR per
step, frozen weights (and BatchNorm statistics) bit-identical, resume from last.ckpt."""

import copy
import csv

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from torch.optim.lr_scheduler import OneCycleLR

from helpers.config import train_config
from imgexp.data.build import build_datamodule
from imgexp.errors import ImgexpError
from imgexp.models import build_model
from imgexp.training.build import instantiate_callbacks, instantiate_loggers
from imgexp.training.finetune import ProgressiveUnfreezing

EPOCHS, BATCHES = 4, 3
# simple_cnn [8, 16] at 8 px: stages conv0, conv1, neck; [1, 3] thaws neck + conv1 at
# epoch 1 and conv0 at epoch 3
UNFREEZE = {"backbone.stage2": 1, "backbone.stage1": 1, "backbone.stage0": 3, "head": 0}


class Recorder(Callback):
    """What the optimizer sees at every step, and the weights at every epoch end."""

    def __init__(self):
        self.steps, self.snapshots, self.start = [], [], None

    def on_train_start(self, trainer, pl_module):
        self.start = copy.deepcopy(pl_module.state_dict())

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.steps.append({
            "epoch": trainer.current_epoch, "step": trainer.global_step,
            "lr": {g["name"]: g["lr"] for g in optimizer.param_groups},
            "trainable": {g["name"]: all(p.requires_grad for p in g["params"])
                          for g in optimizer.param_groups},
            "bn_training": [m.training for m in pl_module.backbone.modules()
                            if isinstance(m, torch.nn.BatchNorm2d)]})

    def on_train_epoch_end(self, trainer, pl_module):
        self.snapshots.append(copy.deepcopy(pl_module.state_dict()))


class StopAfter(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


class LrOnlyFreezing(ProgressiveUnfreezing):
    """The DDP mode (requires_grad kept on, LR 0 only), forced on one process."""

    def setup(self, trainer, pl_module, stage):
        super().setup(trainer, pl_module, stage)
        self.keep_requires_grad = True


def fit(tmp_path, data_dir, overrides=(), extra=(), ckpt_path=None, callback_cls=None,
        lr_interval=None):
    """lr_interval: keep the LearningRateMonitor at that interval, logging to csv/."""
    monitor = ([f"callbacks.lr_monitor.logging_interval={lr_interval}",
                "trainer.log_every_n_steps=1"] if lr_interval else ["~callbacks.lr_monitor"])
    cfg = train_config([
        "data.image_size=8", "model.backbone.channels=[8,16]", "model.backbone.dropout=0",
        "data.batch_size=16", "callbacks=finetune", *monitor,
        "callbacks.progressive_unfreezing.unfreeze_at=[1,3]",
        f"trainer.max_epochs={EPOCHS}", f"+trainer.limit_train_batches={BATCHES}",
        "+trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", *overrides],
        tmp_path, data_dir)
    datamodule = build_datamodule(cfg)
    datamodule.resolve()
    model = build_model(cfg, datamodule.classes, datamodule.train_labels())
    callbacks = instantiate_callbacks(cfg.callbacks)
    if callback_cls is not None:
        callbacks = [callback_cls(c.unfreeze_at, c.lr_decay)
                     if isinstance(c, ProgressiveUnfreezing) else c for c in callbacks]
    logger = instantiate_loggers(cfg.logger) if lr_interval else False
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=[*callbacks, *extra], logger=logger)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return model, trainer


def group_keys(model):
    """state-dict keys (weights and BN buffers) of each backbone stage."""
    stages = model.backbone.param_stages()
    owners = [{name.rsplit(".", 1)[0] for name in stage} for stage in stages]
    return {f"backbone.stage{i}": [k for k in model.state_dict()
                                   if k.startswith("backbone.")
                                   and k.removeprefix("backbone.").rsplit(".", 1)[0] in own]
            for i, own in enumerate(owners)}


@pytest.fixture(scope="module")
def adamw_run(tmp_path_factory, data_dir):
    recorder = Recorder()
    model, trainer = fit(tmp_path_factory.mktemp("ft"), data_dir,
                         ["optimizer=adamw", "optimizer.weight_decay=0.1", "optimizer.lr=0.01"],
                         [recorder])
    return model, trainer, recorder


def test_trainable_groups_per_epoch(adamw_run):
    _, _, rec = adamw_run
    assert len(rec.steps) == EPOCHS * BATCHES
    for step in rec.steps:
        expected = {name: step["epoch"] >= epoch for name, epoch in UNFREEZE.items()}
        assert step["trainable"] == expected, step["epoch"]
        # BN of frozen stages stays in eval mode although Lightning calls model.train()
        assert step["bn_training"] == [step["epoch"] >= 3, step["epoch"] >= 1]


def test_every_group_follows_onecycle_once_unfrozen(adamw_run):
    _, trainer, rec = adamw_run
    optimizer = trainer.optimizers[0]
    peaks = {g["name"]: g["max_lr"] for g in optimizer.param_groups}
    assert peaks == pytest.approx({"backbone.stage2": 0.005, "backbone.stage1": 0.0025,
                                   "backbone.stage0": 0.00125, "head": 0.01})
    names = list(peaks)
    dummy = [torch.nn.Parameter(torch.zeros(1)) for _ in names]
    reference_opt = torch.optim.AdamW([{"params": [p], "lr": peaks[n]}
                                       for p, n in zip(dummy, names, strict=True)])
    reference = OneCycleLR(reference_opt, max_lr=[peaks[n] for n in names],
                           total_steps=EPOCHS * BATCHES, pct_start=0.3)
    for step in rec.steps:
        curve = dict(zip(names, reference.get_last_lr(), strict=True))
        for name in names:
            expected = curve[name] if step["epoch"] >= UNFREEZE[name] else 0.0
            assert step["lr"][name] == pytest.approx(expected, rel=1e-9, abs=1e-15), (step, name)
        reference_opt.step()
        reference.step()


@pytest.mark.parametrize("mode", ["adamw", "sgd", "lr_only"])
def test_frozen_weights_are_bit_identical(adamw_run, tmp_path, data_dir, mode):
    if mode == "adamw":
        model, _, rec = adamw_run
    else:
        rec = Recorder()
        overrides = (["optimizer=sgd", "optimizer.weight_decay=0.05", "optimizer.lr=0.1"]
                     if mode == "sgd" else ["optimizer=adamw", "optimizer.weight_decay=0.1"])
        model, _ = fit(tmp_path, data_dir, overrides, [rec],
                       callback_cls=LrOnlyFreezing if mode == "lr_only" else None)
    if mode == "lr_only":  # gradients flowed into frozen stages, yet nothing moved
        assert all(all(s["trainable"].values()) for s in rec.steps)
    for name, keys in group_keys(model).items():
        for epoch, snapshot in enumerate(rec.snapshots):
            same = all(torch.equal(snapshot[k], rec.start[k]) for k in keys)
            assert same == (epoch < UNFREEZE[name]), (mode, name, epoch)


def test_resume_mid_schedule_restores_groups_and_lrs(adamw_run, tmp_path, data_dir):
    _, _, full = adamw_run
    overrides = ["optimizer=adamw", "optimizer.weight_decay=0.1", "optimizer.lr=0.01"]
    fit(tmp_path, data_dir, overrides, [StopAfter(1)])
    resumed = Recorder()
    _, trainer = fit(tmp_path, data_dir, overrides, [resumed],
                     ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))
    assert [s["epoch"] for s in resumed.steps] == [e for e in range(2, EPOCHS)
                                                   for _ in range(BATCHES)]
    tail = full.steps[2 * BATCHES:]
    for got, want in zip(resumed.steps, tail, strict=True):
        assert got["trainable"] == want["trainable"]
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-9)
    assert len(trainer.optimizers[0].param_groups) == 4


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_logged_lrs_are_the_ones_the_optimizer_uses(tmp_path, data_dir, interval):
    """csv (and W&B: the same LearningRateMonitor feeds every logger) shows 0 for frozen groups."""
    rec = Recorder()
    fit(tmp_path, data_dir, ["optimizer=adamw"], [rec], lr_interval=interval)
    used = {s["step"]: s["lr"] for s in rec.steps}
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    logged = [(int(row["step"]), {key.split("/", 1)[1]: float(value) for key, value in row.items()
                                  if key.startswith("lr-") and value}) for row in rows]
    logged = [(step, lrs) for step, lrs in logged if lrs]
    assert len(logged) == (EPOCHS * BATCHES if interval == "step" else EPOCHS)
    frozen_seen = 0
    for step, lrs in logged:
        assert lrs == pytest.approx(used[step], rel=1e-6, abs=0), (interval, step)
        frozen_seen += sum(lr == 0 for lr in lrs.values())
    assert frozen_seen  # the run has frozen stages, logged at 0


def test_bad_schedules_are_clear(tmp_path, data_dir):
    with pytest.raises(ImgexpError, match="increasing"):
        ProgressiveUnfreezing(unfreeze_at=[5, 2])
    with pytest.raises(ImgexpError, match="lr_decay"):
        ProgressiveUnfreezing(lr_decay=0)
    with pytest.raises(ImgexpError, match="only 3 stages"):
        fit(tmp_path, data_dir, ["callbacks.progressive_unfreezing.unfreeze_at=[1,2,3,4]"])
