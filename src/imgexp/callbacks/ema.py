"""EMA of weights through Lightning's WeightAveraging: it validates and checkpoints the
averaged weights and restores the raw ones for training (and on resume)."""

from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_avg_fn


class EMA(WeightAveraging):
    def __init__(self, decay: float = 0.999, start_step: int = 0):
        super().__init__(avg_fn=get_ema_avg_fn(decay))
        self.start_step = start_step

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx >= self.start_step
