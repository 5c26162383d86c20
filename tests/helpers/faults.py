"""Faults injected into a real training subprocess (+callbacks.fault._target_=helpers.faults.Fault):
from the first checkpoint save of epoch 1 on, the process is killed at a chosen point of the
write, or every write under the test's folders fails as on a full disk.

FAULT (environment) says which:
  kill:bytes:F   SIGKILL once F x (bytes of the first checkpoint) have been written, counting
                 Python file writes and os.sendfile (a cross-device move copies with it)
  kill:fsync:K   SIGKILL at the K-th os.fsync
  kill:replace   SIGKILL at the first os.replace or os.rename
  enospc:write   every write raises OSError(ENOSPC)
  enospc:fsync   every os.fsync raises OSError(ENOSPC)
FAULT_ROOTS: the folders (os.pathsep-separated) whose files the faults touch, /tmp's stand-in
included, so that a write elsewhere (a library's cache) neither triggers nor fails.
It never depends on timing: the counts are of bytes and calls, in one process.
"""

import builtins
import errno
import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback

ROOTS = [Path(p).resolve() for p in os.environ.get("FAULT_ROOTS", "").split(os.pathsep) if p]
REAL_OPEN, REAL_FSYNC, REAL_SENDFILE = builtins.open, os.fsync, os.sendfile
REAL_REPLACE, REAL_RENAME = os.replace, os.rename


def _ours(path) -> bool:
    try:
        path = Path(os.fsdecode(path)).resolve()
    except (TypeError, ValueError):
        return False
    return any(root == path or root in path.parents for root in ROOTS)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _full(*_, **__):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _Counting:
    """A file opened for writing, its bytes counted (and cut at the kill point)."""

    def __init__(self, f, fault: "Fault"):
        self._f, self._fault = f, fault

    def write(self, data):
        if self._fault.kind == "enospc:write":
            _full()
        return self._fault.written(data, self._f.write)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def __iter__(self):
        return iter(self._f)


class Fault(Callback):
    def __init__(self):
        self.kind = os.environ["FAULT"]
        self.limit: float | None = None
        self.count = 0

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.current_epoch >= 1 and self.limit is None:
            self.arm(checkpoint)

    def arm(self, checkpoint) -> None:
        import io

        import torch

        size = io.BytesIO()
        torch.save(checkpoint, size)
        fraction = float(self.kind.split(":")[2]) if self.kind.startswith("kill:bytes") else 0
        self.limit = fraction * len(size.getvalue())
        fault = self

        def open_(file, mode="r", *args, **kwargs):
            f = REAL_OPEN(file, mode, *args, **kwargs)
            writing = any(c in mode for c in "wax+")
            return _Counting(f, fault) if writing and _ours(file) else f

        def sendfile(out_fd, in_fd, offset, count):
            return fault.written(count, lambda n: REAL_SENDFILE(out_fd, in_fd, offset, n))

        builtins.open = open_
        os.sendfile = sendfile
        if self.kind == "enospc:fsync":
            os.fsync = _full
        if self.kind.startswith("kill:fsync"):
            os.fsync = self.fsync
        if self.kind == "kill:replace":
            os.replace = os.rename = lambda *a, **k: _die()

    def fsync(self, fd) -> None:
        self.count += 1
        if self.count == int(self.kind.split(":")[2]):
            _die()
        REAL_FSYNC(fd)

    def written(self, data, write):
        """Write `data` (bytes, or a count for sendfile), dying at the kill point."""
        if not self.kind.startswith("kill:bytes"):
            return write(data)
        n = data if isinstance(data, int) else len(data)
        if self.count + n >= self.limit:
            cut = int(self.limit - self.count)
            if cut > 0:
                write(cut if isinstance(data, int) else data[:cut])
            _die()  # what Python still buffered is lost, as in a real kill
        self.count += n
        return write(data)
