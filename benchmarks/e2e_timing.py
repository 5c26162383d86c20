"""Timestamps of a training run's phases, for bench_end_to_end's breakdown: added to the user's
command line as one more callback (`+callbacks.e2e_timing._target_=...`), it only reads the
clock in Lightning's hooks and writes one JSON file (path in $IMGEXP_E2E_TIMING) at the end."""

import json
import os
import time

from lightning.pytorch.callbacks import Callback


class Timestamps(Callback):
    def __init__(self):
        self.t = {"callback_init": time.time(), "train_epochs": [], "val": [], "sanity": []}
        self._last = 0.0  # end of the previous train batch (or the epoch start)
        self.data = self.steps = 0.0

    def _dump(self) -> None:
        self.t["data_wait_s"], self.t["train_steps_s"] = self.data, self.steps
        with open(os.environ["IMGEXP_E2E_TIMING"], "w") as f:
            json.dump(self.t, f)

    def on_fit_start(self, trainer, pl_module):
        self.t["fit_start"] = time.time()

    def on_train_epoch_start(self, trainer, pl_module):
        self._last = time.perf_counter()
        self.t["train_epochs"].append([time.time(), None])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.perf_counter()
        self.data += now - self._last  # waiting for the loader (decode, collate, transfer)
        self._last = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self.steps += now - self._last  # forward, backward, optimiser, metrics, logging
        self._last = now

    def on_train_epoch_end(self, trainer, pl_module):
        self.t["train_epochs"][-1][1] = time.time()

    def on_validation_start(self, trainer, pl_module):
        key = "sanity" if trainer.sanity_checking else "val"
        self.t[key].append([time.time(), None])

    def on_validation_end(self, trainer, pl_module):
        key = "sanity" if trainer.sanity_checking else "val"
        self.t[key][-1][1] = time.time()

    def on_fit_end(self, trainer, pl_module):
        self.t["fit_end"] = time.time()
        self._dump()

    def on_test_start(self, trainer, pl_module):
        self.t["test_start"] = time.time()

    def on_test_end(self, trainer, pl_module):
        self.t["test_end"] = time.time()
        self._dump()
