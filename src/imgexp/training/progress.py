"""Training progress: Lightning's Rich bar on a terminal, one log line per epoch in a log file
(a Rich bar redrawn into a file or a SLURM log is a narrow column of control characters)."""

import logging
import sys
import time

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from imgexp.progress import is_terminal

log = logging.getLogger("imgexp.progress")


class EpochLines(ProgressBar):
    """`epoch 3/12: train/loss 0.41, val/acc 0.93, val/loss 0.29 (4.2 s)` after each epoch's
    validation. A ProgressBar, so Lightning adds no bar of its own next to it."""

    def __init__(self):
        super().__init__()
        self._enabled = True
        self._epoch_start = time.perf_counter()
        self._pending: tuple[int, float] | None = None  # (epoch, seconds) not printed yet

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    # Lightning calls callbacks' on_train_epoch_end before the module's, where the epoch's train
    # metrics are logged: the line waits for them (the next epoch's start, or the end of fit)
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._print_pending(trainer)
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._pending = (trainer.current_epoch + 1, time.perf_counter() - self._epoch_start)

    def on_train_end(self, trainer, pl_module) -> None:
        self._print_pending(trainer)

    def _print_pending(self, trainer) -> None:
        pending, self._pending = self._pending, None
        if pending is None or not (self._enabled and trainer.is_global_zero):
            return
        metrics = {k.removesuffix("_epoch"): v for k, v in trainer.callback_metrics.items()
                   if k.startswith(("train/", "val/")) and not k.endswith("_step")}
        shown = ", ".join(f"{k} {float(v):.4g}" for k, v in sorted(metrics.items()))
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        log.info("epoch %d/%s: %s (%.1f s)", pending[0], epochs, shown, pending[1])


def progress_bar() -> ProgressBar:
    """The bar for where the output goes (Rich writes to stdout)."""
    return RichProgressBar() if is_terminal(sys.stdout) else EpochLines()
