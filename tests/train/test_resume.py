"""Resume equals an uninterrupted run: a deterministic CPU run SIGKILLed at an epoch boundary
(during OneCycle, after the first unfreeze of callbacks=finetune, during EMA) or mid-epoch
(from a checkpoint saved every 2 steps, balanced sampler: the loader's position, the sampler's
draw and the epoch's metric accumulators travel in the checkpoint), then resumed
from last.ckpt, ends exactly like the same run left alone: metrics.json, every logged row of
csv/metrics.csv (per-step learning rates included), the weights, which parameters the
optimizer ever updated (the requires_grad mask), the best score and best.ckpt, the W&B run.
"""

import json
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from helpers.resume import csv_rows, launch
from imgexp.data.samplers import BalancedSampler, ShuffleSampler

COMMON = ["data.image_size=16", "model.backbone.channels=[8,16]", "model.backbone.dense_units=32",
          "model.backbone.dropout=0", "augmentation=none", "trainer.max_epochs=3",
          "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=2",
          "trainer.deterministic=true", "trainer.enable_progress_bar=false",
          "~callbacks.progress_bar", "callbacks.lr_monitor.logging_interval=step",
          "trainer.log_every_n_steps=1"]
CASES = {
    "onecycle": ["logger=default"],  # csv + W&B offline
    "finetune": ["logger=csv", "callbacks=finetune",
                 "callbacks.progressive_unfreezing.unfreeze_at=[1,2]"],
    "ema": ["logger=csv", "callbacks.ema.enabled=true", "callbacks.ema.decay=0.9"],
    "midepoch": ["logger=csv", "data.sampler=balanced",
                 "callbacks.last_checkpoint.every_n_train_steps=2"],
}
# SIGKILL at the start of epoch 2, or of epoch 1's batch 3 (last.ckpt: step 6, mid-epoch 1)
KILL = {"midepoch": ["+callbacks.kill.epoch=1", "+callbacks.kill.batch=3"]}
KILLED_AT = {"midepoch": (1, 6)}  # (epoch, global step) of the checkpoint resumed from
VOLATILE = {"best_model_path"}


def train(run_dir: Path, data_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return launch(run_dir, *COMMON, *overrides, f"paths.data_dir={data_dir}")


def same_numbers(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k] == pytest.approx(b[k], abs=1e-6) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_killed_and_resumed_run_equals_the_uninterrupted_one(tmp_path, data_dir, case):
    overrides = CASES[case]
    alone = train(tmp_path / "alone", data_dir, *overrides)
    assert alone.returncode == 0, alone.stderr[-3000:]

    run = tmp_path / "run"
    killed = train(run, data_dir, *overrides, "+callbacks.kill._target_=helpers.resume.KillAt",
                   *KILL.get(case, ["+callbacks.kill.epoch=2"]))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (run / "metrics.json").exists()
    last = run / "checkpoints" / "last.ckpt"
    killed_ckpt = torch.load(last, weights_only=False)
    assert (killed_ckpt["epoch"], killed_ckpt["global_step"]) == KILLED_AT.get(case, (1, 8))
    # resumed from another launch folder: it continues in the checkpoint's run directory
    resumed = train(tmp_path / "launch", data_dir, *overrides, f"ckpt_path={last}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    got = json.loads((run / "metrics.json").read_text())
    want = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE}  # noqa: E731
    assert same_numbers(strip(got), strip(want))
    assert got["best_model_path"] == str(run / "checkpoints" / "best.ckpt")

    rows, want_rows = csv_rows(run), csv_rows(tmp_path / "alone")
    assert len(rows) == len(want_rows)
    for row, want_row in zip(rows, want_rows, strict=True):
        assert same_numbers(row, want_row), (row, want_row)

    end, want_end = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)
                     for d in (run, tmp_path / "alone"))
    for key, value in want_end["state_dict"].items():
        assert torch.allclose(end["state_dict"][key].float(), value.float(), atol=1e-6), key
    # the parameters the optimizer has state for = those that ever had requires_grad on
    assert end["optimizer_states"][0]["state"].keys() == \
        want_end["optimizer_states"][0]["state"].keys()
    scores = [[float(v["best_model_score"]) for k, v in ckpt["callbacks"].items()
               if "'monitor': 'val/acc'" in k] for ckpt in (end, want_end)]
    assert len(scores[0]) == 1 and scores[0] == pytest.approx(scores[1], abs=1e-6)
    best_ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)
    want_best_ckpt = torch.load(tmp_path / "alone" / "checkpoints" / "best.ckpt",
                                weights_only=False)
    assert best_ckpt["epoch"] == want_best_ckpt["epoch"]
    if case == "onecycle":
        assert end["imgexp"]["wandb_run_id"] == killed_ckpt["imgexp"]["wandb_run_id"]
        assert len(list((run / "wandb").glob(
            f"offline-run-*-{killed_ckpt['imgexp']['wandb_run_id']}"))) == 2


@pytest.mark.parametrize("make", [lambda: ShuffleSampler(range(50), seed=3),
                                  lambda: BalancedSampler([0] * 40 + [1] * 10, seed=3)],
                         ids=["shuffle", "balanced"])
def test_train_batches_depend_on_seed_and_epoch_not_on_the_global_rng(make):
    """What makes a resumed run draw the batches an uninterrupted one would."""
    orders = {}
    for epoch, global_seed in [(0, 1), (1, 2), (0, 3), (1, 4)]:
        torch.manual_seed(global_seed)
        sampler = make()
        sampler.set_epoch(epoch)
        orders.setdefault(epoch, []).append(list(sampler))
    assert orders[0][0] == orders[0][1] and orders[1][0] == orders[1][1]
    assert orders[0][0] != orders[1][0]
