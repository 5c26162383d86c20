"""EMA of the weights through Lightning's WeightAveraging, with timm's decay warm-up.

Validation, the checkpoints' `state_dict` (so best.ckpt, imgexp-eval, predict), the test after
fitting and the final model all use the averaged weights; the raw ones train and travel in the
checkpoint as `current_model_state` for resuming. Two departures from Lightning's callback:

- loading a checkpoint outside fit (trainer.test(ckpt_path=best)) keeps its averaged
  `state_dict`; Lightning's callback would put the raw weights back, so test and eval differed;
- the raw weights come back at `on_validation_end`, after the module's epoch-end hook: an
  embedding model's gallery is computed there and must come from the averaged weights too.
  Buffers the module recomputes at validation (`pl_module.recomputed_buffers`, the gallery)
  are then shared by both copies, so averaging leaves them as computed.
"""

import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from imgexp.errors import ImgexpError


class EMA(WeightAveraging):
    """decay_t = clamp(1 - (1 + t / warmup_gamma) ** -warmup_power, min=0, max=decay) after t
    updates (timm's ModelEmaV3 warm-up; warmup_power 2/3 reaches 0.999 after ~31k steps, 3/4
    after ~10k), or the constant `decay` with warmup=false. The first update copies the weights.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True, warmup_power: float = 2 / 3,
                 warmup_gamma: float = 1.0, start_step: int = 0):
        if not 0 <= decay < 1:
            raise ImgexpError(f"callbacks.ema.decay={decay}: use a value in [0, 1), e.g. 0.999")
        if warmup and (warmup_power <= 0 or warmup_gamma <= 0):
            raise ImgexpError("callbacks.ema.warmup_power and warmup_gamma must be > 0")
        super().__init__(multi_avg_fn=self._average)
        self.decay, self.warmup = decay, warmup
        self.warmup_power, self.warmup_gamma = warmup_power, warmup_gamma
        self.start_step = start_step

    def decay_at(self, updates: int) -> float:
        """The decay of the update that follows `updates` earlier ones."""
        if not self.warmup:
            return self.decay
        return min(self.decay, max(0.0, 1 - (1 + updates / self.warmup_gamma) ** -self.warmup_power))

    @torch.no_grad()
    def _average(self, averaged: list, current: list, num_averaged: torch.Tensor) -> None:
        # AveragedModel groups the tensors by device and dtype: integer buffers are copied
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        torch._foreach_lerp_(averaged, current, 1 - self.decay_at(int(num_averaged)))

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx >= self.start_step

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        """Nothing yet: the module's own epoch end still needs the averaged weights."""

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._average_model is None:
            return
        averaged = self._average_model.module
        for name in getattr(pl_module, "recomputed_buffers", ()):
            setattr(averaged, name, getattr(pl_module, name).clone())
        self._swap_models(pl_module)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return  # test / validate / predict: keep the averaged weights of `state_dict`
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
