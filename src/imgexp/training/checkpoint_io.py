"""Checkpoints written like every other output (imgexp.atomic): beside their final name, flushed,
renamed over it.

Lightning's own save goes through fsspec, which writes the temporary file in /tmp and moves it
into place: across file systems the move is a copy, and a kill during it left `last.ckpt` at 0
bytes (the previous good one gone) and the temporary file in /tmp. Loading is Lightning's.
"""

import glob
import io
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from imgexp.atomic import write_bytes_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None
                        ) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: fsspec's way
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        # temporary files of saves a kill interrupted: nobody else writes here (the run
        # folder is locked, and only rank 0 saves)
        for leftover in path.parent.glob(f".{glob.escape(path.name)}.*"):
            leftover.unlink(missing_ok=True)
        # serialised in memory first (as Lightning does), so that every byte reaches the
        # disk through one Python write: a full disk is an OSError there, not torch's C++ error
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes_atomic(path, buffer.getbuffer())
