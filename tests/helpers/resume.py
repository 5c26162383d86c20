"""Test support for the resume tests (tests/train/test_resume*.py): a callback that SIGKILLs its
own process, given to imgexp-train through a Hydra override
(+callbacks.kill._target_=helpers.resume.KillAt), so a run dies exactly where a test wants it
to (no Python cleanup, no Lightning shutdown hooks); imgexp-train in a subprocess; the rows of
a run's csv/metrics.csv. The resume inherits the run's callbacks, KillAt too: it kills the
first process only."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback

TESTS = Path(__file__).parents[1]


class KillAt(Callback):
    """SIGKILL at the start of train epoch `epoch` (after the previous epoch's checkpoints), or
    with `batch`, at the start of that batch of that epoch (mid-epoch)."""

    def __init__(self, epoch: int, batch: int | None = None):
        self.epoch, self.batch = epoch, batch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and self.batch is None and not trainer.ckpt_path:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch \
                and not trainer.ckpt_path:
            os.kill(os.getpid(), signal.SIGKILL)


def kill_at(epoch: int, batch: int | None = None) -> list[str]:
    """The overrides that add KillAt to a run."""
    return ["+callbacks.kill._target_=helpers.resume.KillAt", f"+callbacks.kill.epoch={epoch}",
            *([f"+callbacks.kill.batch={batch}"] if batch is not None else [])]


def launch(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`imgexp-train *overrides` in a fresh process writing into run_dir."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")]), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true"}
    # an in-process W&B run of an earlier test leaves its service's address here; a run killed
    # while attached to that shared service would keep its run id "in use" for the resume
    env.pop("WANDB_SERVICE", None)
    return subprocess.run([sys.executable, "-m", "imgexp.train", *overrides,
                           f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, env=env, timeout=600)


def csv_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "csv" / "metrics.csv").open(newline="") as file:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
