"""Each train batch's randomness (dropout, drop-path, mixup) from (seed, epoch, batch, rank).

The main process's random streams are reseeded before every train batch, so a batch draws the
same masks whatever ran before it: an uninterrupted run, one resumed from last.ckpt at an epoch
end or mid-epoch, or one whose loader, validation or callbacks consumed random numbers
differently. Nothing has to travel in the checkpoint.
"""

import random

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

# keeps these seeds apart from the data's (seed, epoch) draws in imgexp.data.samplers
BATCH_STREAM = 2


class SeedEachBatch(Callback):
    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        state = np.random.SeedSequence([self.seed, trainer.current_epoch, batch_idx,
                                        trainer.global_rank, BATCH_STREAM]).generate_state(2)
        torch.manual_seed(int(state[0]) << 32 | int(state[1]))  # every device's generator
        np.random.seed(state)  # timm's Mixup draws from numpy's and python's global streams
        random.seed(int(state[0]))
