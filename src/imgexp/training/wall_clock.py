"""A run's wall time over all of its processes: a resumed run's run_info.json counts the
time spent before the resume too."""

import time

from lightning.pytorch.callbacks import Callback


class WallClock(Callback):
    """Seconds since `start` plus those spent before it; the total travels in every checkpoint.

    `earlier` is what the run folder's run_info.json recorded (a process that finished); the
    checkpoint's figure is what a process had spent when it saved it (one killed afterwards
    wrote no run_info.json). Both count time spent before this process: the larger is kept.
    """

    def __init__(self, start: float, earlier: float = 0.0):
        self.start, self.earlier = start, earlier

    def total(self) -> float:
        return self.earlier + time.perf_counter() - self.start

    def state_dict(self) -> dict:
        return {"wall_time_s": self.total()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.earlier = max(self.earlier, state_dict.get("wall_time_s", 0.0))
