"""DDP for real: `trainer=ddp trainer.accelerator=cpu trainer.devices=2` spawns two gloo
processes (Lightning re-launches the command line), each test compares what the ranks did
(tests/helpers/ddp_probe.py writes it) with what one process does. No augmentation: it is
not what is tested, and benchmarks/gpu_check.sh runs these tests where albumentations is
not installed."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
       "trainer.enable_progress_bar=false", "~callbacks.progress_bar", "data.image_size=16",
       "~augmentation", "+callbacks.probe._target_=helpers.ddp_probe.Probe"]


def train(run_dir: Path, data_dir: Path, overrides: list[str]) -> str:
    path = os.pathsep.join([str(SRC), str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "imgexp.train", *DDP, f"paths.data_dir={data_dir}",
                          f"hydra.run.dir={run_dir}", *overrides],
                         env=env, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def probes(run_dir: Path) -> list[dict]:
    return [json.loads((run_dir / f"probe_rank{r}.json").read_text()) for r in range(2)]


# 287 test images: DistributedSampler pads rank 1 with a repeat of image 0
ODD_TEST = "data.ratios=[0.7,0.14,0.16]"


@pytest.fixture(scope="module")
def triplet_run(tmp_path_factory, data_dir) -> Path:
    """The embedding recipe (P x K, progressive unfreezing + OneCycle) on 2 ranks."""
    run_dir = tmp_path_factory.mktemp("ddp_triplet")
    train(run_dir, data_dir, ["experiment=digits_triplet", "logger=csv", ODD_TEST, "trainer.max_epochs=2",
                              "callbacks.progressive_unfreezing.unfreeze_at=[1,1]"])
    return run_dir


@pytest.fixture(scope="module")
def softmax_runs(tmp_path_factory, data_dir) -> tuple[Path, str, str]:
    """digits_cnn with EMA and W&B offline on 2 ranks for 2 epochs, then resumed to 3."""
    run_dir = tmp_path_factory.mktemp("ddp_softmax")
    common = ["experiment=digits_cnn", "model.backbone.channels=[16,32]", "callbacks.ema.enabled=true",
              "logger=default"]
    first = train(run_dir, data_dir, [*common, "trainer.max_epochs=2"])
    (run_dir / "probe_rank0.json").rename(run_dir / "first_probe_rank0.json")
    resumed = train(tmp_path_factory.mktemp("ddp_resume_launch"), data_dir,
                    [*common, "trainer.max_epochs=3",
                     f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"])
    return run_dir, first, resumed


def test_pk_batches_cover_every_image_once_and_keep_classes_on_one_rank(triplet_run):
    ranks = probes(triplet_run)
    train_size = int((triplet_run / "data_split.csv").read_text().count(",train"))
    assert ranks[0]["world_size"] == 2
    for epoch in ranks[0]["batches"]:
        seen = [i for r in ranks for index, _ in r["batches"][epoch] for i in index]
        # every image at least once; repeats only from filling the last K-chunk of a class
        assert set(seen) == set(range(train_size))
        assert len(ranks[0]["batches"][epoch]) == len(ranks[1]["batches"][epoch])
        assert ranks[0]["batches"][epoch] != ranks[1]["batches"][epoch]
        for r in ranks:
            for _, labels in r["batches"][epoch]:
                assert set(Counter(labels).values()) == {8}  # K = 8 of each class: none split


def test_progressive_unfreezing_under_ddp_holds_frozen_stages_with_lr_zero(triplet_run):
    ranks = probes(triplet_run)
    assert ranks[0]["keep_requires_grad"] == [True]  # the LR-0 mode, not requires_grad off
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # the ranks hold the same weights
    assert ranks[0]["stem_moved"]["0"] == 0.0  # frozen in epoch 0
    assert ranks[0]["stem_moved"]["1"] > 0  # thawed at epoch 1
    assert ranks[0]["lr"]["0"][0] == 0.0 and ranks[0]["lr"]["0"][-1] > 0  # OneCycle on the head


def test_gathered_retrieval_metrics_equal_one_process_on_the_same_weights(triplet_run, data_dir):
    import lightning as L

    from helpers.config import train_config
    from imgexp.data.build import build_datamodule
    from imgexp.models import load_model

    metrics = json.loads((triplet_run / "metrics.json").read_text())
    assert (triplet_run / "data_split.csv").read_text().count(",test") % 2 == 1
    cfg = train_config(["experiment=digits_triplet", "data.image_size=16", ODD_TEST,
                        "~augmentation"],
                       triplet_run / "one_process", data_dir)
    datamodule = build_datamodule(cfg)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.test(load_model(metrics["best_model_path"]), datamodule=datamodule, verbose=False)
    one = {k: float(v) for k, v in trainer.callback_metrics.items()}
    for key in ("test/knn_acc", "test/precision_at_1", "test/r_precision", "test/map_at_r"):
        assert metrics[key] == pytest.approx(one[key], abs=1e-6), key


def test_softmax_ddp_reaches_the_one_process_bar_with_ema_and_resume(softmax_runs, data_dir):
    run_dir, first, resumed = softmax_runs
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.8  # the bar of the one-process digits_run fixture
    assert metrics["epochs"] == 3
    first_probe, ranks = json.loads((run_dir / "first_probe_rank0.json").read_text()), probes(run_dir)
    assert sorted(first_probe["batches"]) == ["0", "1"]
    assert sorted(ranks[0]["batches"]) == ["2"]  # resumed after the 2 epochs of last.ckpt
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    raw = ckpt["current_model_state"]
    assert any(not torch.equal(raw[k], v) for k, v in ckpt["state_dict"].items()
               if v.is_floating_point())  # the averaged weights are the ones saved


def test_run_files_and_wandb_run_are_written_once(softmax_runs):
    run_dir, first, resumed = softmax_runs
    assert first.count("run directory:") == resumed.count("run directory:") == 1
    assert json.loads((run_dir / "run_info.json").read_text())["world_size"] == 2
    wandb_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len({p.name.rsplit("-", 1)[-1] for p in wandb_runs}) == 1  # one run id, resumed
