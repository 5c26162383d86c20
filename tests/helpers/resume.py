"""Test support for tests/train/test_resume.py: a callback that SIGKILLs its own process, given to
imgexp-train through a Hydra override (+callbacks.kill._target_=helpers.resume.KillAt), so a run
dies exactly where a test wants it to (no Python cleanup, no Lightning shutdown hooks). The
resume inherits the run's callbacks, this one too: it kills the first process only."""

import os
import signal

from lightning.pytorch.callbacks import Callback


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
