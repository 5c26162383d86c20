"""A callback the DDP tests add to a real run (+callbacks.probe._target_=...): each rank
writes what it saw to probe_rank<R>.json in the run directory, for the test to compare."""

import json
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


def _checksum(module) -> float:
    return float(sum(p.detach().double().sum() for p in module.parameters()))


class Probe(Callback):
    def __init__(self):
        self.record = {"batches": {}, "checksum": {}, "stem_moved": {}, "lr": {}}
        self.stem = None

    def on_train_start(self, trainer, pl_module):
        self.stem = [p.detach().clone() for p in pl_module.backbone.parameters()][:2]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        epoch = str(trainer.current_epoch)
        self.record["batches"].setdefault(epoch, []).append(
            [batch["index"].tolist(), batch["label"].tolist()])
        self.record["lr"].setdefault(epoch, [g["lr"] for g in
                                             trainer.optimizers[0].param_groups])

    def on_train_epoch_end(self, trainer, pl_module):
        epoch = str(trainer.current_epoch)
        self.record["checksum"][epoch] = _checksum(pl_module)
        now = list(pl_module.backbone.parameters())[:2]
        self.record["stem_moved"][epoch] = max(float((a - b).abs().max())
                                               for a, b in zip(now, self.stem, strict=True))

    def on_fit_end(self, trainer, pl_module):
        self.record["world_size"] = trainer.world_size
        self.record["keep_requires_grad"] = [getattr(c, "keep_requires_grad", None)
                                             for c in trainer.callbacks
                                             if hasattr(c, "keep_requires_grad")]
        self.record["torch_threads"] = torch.get_num_threads()
        out = Path(trainer.default_root_dir) / f"probe_rank{trainer.global_rank}.json"
        out.write_text(json.dumps(self.record))
