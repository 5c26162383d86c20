"""LR schedules as factories of (optimizer, total_steps): the module knows total steps only
once the trainer is attached (trainer.estimated_stepping_batches).

Each param group keeps its own peak LR (its initial `lr`), so discriminative learning rates
(one group per backbone stage) follow the same curve shape.
"""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR


def onecycle(optimizer: Optimizer, total_steps: int, pct_start: float = 0.3,
             div_factor: float = 25.0, final_div_factor: float = 1e4,
             anneal_strategy: str = "cos") -> OneCycleLR:
    max_lr = [group["lr"] for group in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total_steps, 1),
                      pct_start=pct_start, div_factor=div_factor,
                      final_div_factor=final_div_factor, anneal_strategy=anneal_strategy)


def cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0,
           warmup_pct: float = 0.0, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warm-up then cosine decay to min_lr_ratio x the peak LR."""
    warmup = max(warmup_steps, int(warmup_pct * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
