"""Resume mid-epoch where the checkpoint was: the train loader's position reaches the loader.

Lightning saves the position of a stateful train loader (torchdata's StatefulDataLoader) in
the checkpoint, but drops it on resume when `configure_optimizers` has already read
`trainer.estimated_stepping_batches` (OneCycle does): that read builds the loader before the
checkpoint is restored, and the later set-up returns early (Lightning issue #20550, open; fix
proposed in PR #21765). This callback does what that fix does: load the pending position, then
start the loader's iterator again so it continues from there — after giving the samplers the
checkpoint's epoch, as the loader replays that epoch's draw to skip the batches already seen.

A checkpoint saved once the epoch's last batch was drawn holds a position that only looks
unfinished: Lightning stops at the epoch's length without asking the loader for more, so the
loader never learns the epoch ended (and with drop_last the samples of the dropped partial
batch are still "left"). Loaded, it would resume that spent epoch — no batches, or its leftover
ones — in place of the next. Such a position is dropped: the next epoch starts afresh.
"""

from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.pytorch.callbacks import Callback


class ResumeLoaderPosition(Callback):
    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # the callbacks' hook runs before Lightning reads the loops' state from the checkpoint
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        if fit_loop.get("epoch_loop.batch_progress", {}).get("is_last_batch"):
            fit_loop.get("state_dict", {}).pop("combined_loader", None)

    def on_train_start(self, trainer, pl_module) -> None:
        # resuming, Lightning keeps the iterator it made before the checkpoint was restored
        # (with the samplers still at epoch 0): start it again at the checkpoint's epoch, at
        # the position saved, if any
        loop = trainer.fit_loop
        if not ((loop.restarting or loop.is_resuming) and loop._combined_loader is not None
                and loop._data_fetcher is not None):
            return
        for loader in loop._combined_loader.flattened:
            _set_sampler_epoch(loader, loop.epoch_progress.current.processed)
        loop._load_combined_loader_states()
        iter(loop._data_fetcher)
