"""Resume mid-epoch where the checkpoint was: the train loader's position reaches the loader.

Lightning saves the position of a stateful train loader (torchdata's StatefulDataLoader) in
the checkpoint, but drops it on resume when `configure_optimizers` has already read
`trainer.estimated_stepping_batches` (OneCycle does): that read builds the loader before the
checkpoint is restored, and the later set-up returns early (Lightning issue #20550, open; fix
proposed in PR #21765). This callback does what that fix does: load the pending position, then
start the loader's iterator again so it continues from there — after giving the samplers the
checkpoint's epoch, as the loader replays that epoch's draw to skip the batches already seen.
"""

from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.pytorch.callbacks import Callback


class ResumeLoaderPosition(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        loop = trainer.fit_loop
        if not (loop.restarting and loop._combined_loader_states_to_load
                and loop._combined_loader is not None and loop._data_fetcher is not None):
            return
        for loader in loop._combined_loader.flattened:
            _set_sampler_epoch(loader, loop.epoch_progress.current.processed)
        loop._load_combined_loader_states()
        iter(loop._data_fetcher)
