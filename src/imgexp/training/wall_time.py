"""A run's wall time across resumes (run_info.json's wall_time_s): this process's, plus what
the processes before a resume had spent up to the checkpoint resumed from (the checkpoint
carries it; the work a kill lost after that checkpoint is done again, and counted then)."""

import time

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn


class WallTime(Callback):
    def __init__(self, start: float):
        self.start, self.before = start, 0.0  # start: time.perf_counter() of this process

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def state_dict(self) -> dict:
        return {"wall_time_s": self.elapsed()}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # a resume only: testing on best.ckpt restores the callbacks too, from this same run
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if trainer.state.fn == TrainerFn.FITTING and state:
            self.before = float(state["wall_time_s"])
