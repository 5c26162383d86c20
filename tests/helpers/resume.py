"""Test support for tests/train/test_resume.py: a callback that SIGKILLs its own process, given to
imgexp-train through a Hydra override (+callbacks.kill._target_=helpers.resume.KillAt), so a run
dies exactly where a test wants it to (no Python cleanup, no Lightning shutdown hooks)."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAt(Callback):
    """SIGKILL at the start of train epoch `epoch` (after the previous epoch's checkpoints)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
