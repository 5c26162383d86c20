"""Progressive unfreezing that works with OneCycleLR, resuming and DDP.

Lightning's BackboneFinetuning adds param groups mid-training, which a OneCycle schedule
(built once, one max_lr per group) never learns about, and a resumed run then fails with
"different number of parameter groups". Here every group exists from the first step: one
per backbone stage (timm's group_matcher, or SimpleCNN's conv blocks) plus one for the head
and loss, each with its own peak LR (deeper = smaller). A frozen group is held at LR 0 and,
on a single process, has requires_grad off (no gradient, so no optimizer state, weight
decay or momentum can move it); its BatchNorm layers stay in eval mode so their running
statistics do not move either. Under DDP requires_grad is left on (DDP registers the
trainable parameters once, when it wraps the model) and the LR 0 alone keeps weights still.
The schedule is a function of the epoch, so a resumed run restores it as it was.
"""

import logging

import numpy as np
from lightning.pytorch.callbacks import Callback
from torch import nn

from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)
HEAD_GROUP = "head"


def backbone_stages(backbone: nn.Module) -> list[list[str]]:
    """Parameter names of the backbone by stage, input to top (one stage if unknown)."""
    if hasattr(backbone, "param_stages"):
        return [stage for stage in backbone.param_stages() if stage]
    return [[name for name, _ in backbone.named_parameters()]]


class ProgressiveUnfreezing(Callback):
    """Backbone frozen at first; its stages thaw from the top at the epochs of `unfreeze_at`.

    With E epochs listed, the stages are cut into E contiguous blocks: the top block thaws at
    unfreeze_at[0], the next at unfreeze_at[1], ..., the stem last. The stage d places below
    the top gets lr x lr_decay^(d+1); the head and loss train from epoch 0 at lr.
    """

    def __init__(self, unfreeze_at=(2, 5, 8), lr_decay: float = 0.5):
        epochs = [int(e) for e in unfreeze_at]
        if not epochs or epochs != sorted(epochs) or epochs[0] < 0:
            raise ImgexpError(f"callbacks.progressive_unfreezing.unfreeze_at={list(unfreeze_at)}"
                              ": give increasing epochs >= 0, e.g. [2, 5, 8]")
        if not 0 < lr_decay <= 1:
            raise ImgexpError(f"callbacks.progressive_unfreezing.lr_decay={lr_decay}: "
                              "use a factor in (0, 1] (deeper stages get smaller LRs)")
        self.unfreeze_at, self.lr_decay = epochs, lr_decay
        self.groups: list[dict] = []  # name, params, bn modules, unfreeze epoch, lr factor
        self.keep_requires_grad = False

    # -- plan, before configure_optimizers -------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self.groups:
            return
        self.groups = self.plan(pl_module)
        pl_module.lr_groups = [(g["name"], g["params"], g["lr_factor"]) for g in self.groups]
        self.keep_requires_grad = trainer.world_size > 1
        for g in self.groups:
            log.info("unfreezing: %s (%d tensors) at epoch %d, lr x %.4g", g["name"],
                     len(g["params"]), g["epoch"], g["lr_factor"])

    def plan(self, pl_module) -> list[dict]:
        stages = backbone_stages(pl_module.backbone)
        if len(self.unfreeze_at) > len(stages):
            raise ImgexpError(f"callbacks.progressive_unfreezing.unfreeze_at has "
                              f"{len(self.unfreeze_at)} epochs but the backbone has only "
                              f"{len(stages)} stages: list at most {len(stages)}")
        params = dict(pl_module.backbone.named_parameters())
        modules = dict(pl_module.backbone.named_modules())
        top_down = list(reversed(range(len(stages))))
        blocks = np.array_split(top_down, len(self.unfreeze_at))
        groups = []
        for epoch, block in zip(self.unfreeze_at, blocks, strict=True):
            for stage in map(int, block):
                names = stages[stage]
                depth = len(stages) - 1 - stage
                owners = {name.rsplit(".", 1)[0] for name in names}
                groups.append({
                    "name": f"backbone.stage{stage}", "params": [params[n] for n in names],
                    # by name: DDP's SyncBatchNorm conversion swaps the module objects later
                    "bn": [o for o in sorted(owners)
                           if isinstance(modules.get(o), nn.modules.batchnorm._BatchNorm)],
                    "epoch": epoch, "lr_factor": float(self.lr_decay ** (depth + 1))})
        in_backbone = {id(p) for p in params.values()}
        rest = [p for p in pl_module.parameters() if id(p) not in in_backbone]
        groups.append({"name": HEAD_GROUP, "params": rest, "bn": [], "epoch": 0,
                       "lr_factor": 1.0})
        return groups

    # -- apply at every epoch and step -------------------------------------------------------
    def frozen(self, epoch: int) -> list[dict]:
        return [g for g in self.groups if epoch < g["epoch"]]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        for g in self.groups:
            if epoch == g["epoch"] and g["epoch"] > 0:
                log.info("epoch %d: unfreezing %s", epoch, g["name"])
        self._hold_frozen(trainer, pl_module, epoch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # the scheduler sets every group's LR after each step; frozen ones go back to 0
        # before the next optimizer step. requires_grad too: a run resumed mid-epoch gets no
        # on_train_epoch_start (a frozen stage with gradients would fill Adam's moments)
        self._hold_frozen(trainer, pl_module, trainer.current_epoch)

    def _hold_frozen(self, trainer, pl_module, epoch: int) -> None:
        # Lightning restores each module's own mode after validation, so a stage that was
        # frozen (BN in eval) must be put back in train mode explicitly when it thaws
        for g in self.groups:
            for p in g["params"]:
                p.requires_grad_(epoch >= g["epoch"] or self.keep_requires_grad)
            for name in g["bn"]:
                pl_module.backbone.get_submodule(name).train(
                    pl_module.training and epoch >= g["epoch"])
        for optimizer in trainer.optimizers:
            self._check_groups(optimizer)
            for group, plan in zip(optimizer.param_groups, self.groups, strict=True):
                if epoch < plan["epoch"]:
                    group["lr"] = 0.0

    def _check_groups(self, optimizer) -> None:
        names = [g.get("name") for g in optimizer.param_groups]
        if names != [g["name"] for g in self.groups]:
            raise ImgexpError(f"progressive unfreezing expects the optimizer groups "
                              f"{[g['name'] for g in self.groups]} but found {names}: the "
                              "module's configure_optimizers must use pl_module.param_groups()")
