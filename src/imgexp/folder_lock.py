"""One process per output folder: a stage holds a lock on its run directory (and on any other
folder it writes, such as predict's `output=`) from before Hydra writes `.hydra/` until it ends.

The lock is an exclusive `flock` on `<folder>/.imgexp.lock`, which holds the owner's PID, host
and command for the refusal message. The kernel drops a flock when its process dies however it
dies, so the file a killed run leaves behind is stale by construction and the next stage takes
it over. Only a stage locks (the Hydra callback below opens the scope): a pipeline called from
Python (a test, a notebook) locks nothing. Ranks 1.. of a distributed run work in their rank
0's folder and take no lock. Standard library only: Hydra loads this before any stage runs.
"""

import atexit
import fcntl
import logging
import os
import socket
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from imgexp.errors import ImgexpError, write_error

log = logging.getLogger(__name__)
LOCK_NAME = ".imgexp.lock"
# where launchers put a process's rank (Lightning's own list, rank_zero._get_rank), and the node
RANK_KEYS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")

_held: dict[Path, int] = {}  # folder -> fd of its lock file
_scopes: list[list[Path]] = []  # the folders each open scope (run, sweep, job) locked
_stage = {"name": Path(sys.argv[0]).name}  # named in the lock file: imgexp-train, -predict...


def _secondary_rank() -> bool:
    rank = next((os.environ[k] for k in RANK_KEYS if os.environ.get(k) is not None), "0")
    return rank != "0" or os.environ.get("NODE_RANK", "0") != "0"


def _owner(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"


def _acquire(folder: Path, key: str) -> int:
    """Lock `folder`; a live owner is refused in one line naming its PID."""
    path = folder / LOCK_NAME
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if error := write_error(exc, folder):
                raise error from exc
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ImgexpError(f"{folder} is in use by {_owner(path)}: wait for it to end or "
                              f"choose another {key}=") from None
        # the owner we waited on may have removed the file as it ended: lock the one in place
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    if stale := os.pread(fd, 512, 0).decode(errors="replace").strip():
        log.info("%s: taking over the lock left by %s, which is no longer running", folder, stale)
    owner = f"PID {os.getpid()} on {socket.gethostname()} ({_stage['name']})"
    os.ftruncate(fd, 0)
    os.pwrite(fd, owner.encode(), 0)
    return fd


def check_folder(folder: Path, key: str) -> None:
    """A folder a stage writes into that is, or lies under, a file: one line, not mkdir's
    FileExistsError or NotADirectoryError traceback."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker == folder:
        raise ImgexpError(f"{key}={folder} is a file, not a folder: choose a folder")
    if blocker is not None:
        raise ImgexpError(f"{key}={folder} lies under {blocker}, a file, not a folder: choose "
                          "a folder")


def hold_folder(folder: str | Path, key: str) -> None:
    """Lock `folder` until the current stage scope ends; `key` is the option that chose it
    (named in the refusal). A folder this process holds already is not locked twice."""
    folder = Path(folder).expanduser().resolve()
    check_folder(folder, key)
    if not _scopes or folder in _held or _secondary_rank():
        return
    _held[folder] = _acquire(folder, key)
    _scopes[-1].append(folder)


def _open_scope(config: DictConfig | None = None) -> None:
    if config is not None:
        _stage["name"] = f"imgexp-{config.hydra.job.name}"
    _scopes.append([])


def _close_scope() -> None:
    for folder in reversed(_scopes.pop() if _scopes else []):
        fd = _held.pop(folder)
        # removed while still locked: a process waiting on it retries on the new file
        (folder / LOCK_NAME).unlink(missing_ok=True)
        os.close(fd)


def release_all() -> None:
    while _scopes:
        _close_scope()


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) inherits the lock files' descriptors, and a flock
    lasts while any copy is open: closed here, a killed stage's lock ends with the stage, not
    with its last worker. The child releases nothing else (the file stays: its parent's)."""
    for fd in _held.values():
        os.close(fd)
    _held.clear()
    _scopes.clear()


# a stage that ends in sys.exit (a user error) skips Hydra's end callbacks
atexit.register(release_all)
os.register_at_fork(after_in_child=_forget_in_child)


def _refuse(exc: ImgexpError) -> None:
    """Hydra reports what its callbacks raise with a traceback: say it in one line instead."""
    release_all()
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)


class FolderLock(Callback):
    """Hydra callback (conf/hydra/default.yaml): the run, sweep and job folders of a stage."""

    def _hold(self, folder: str, key: str) -> None:
        try:
            hold_folder(folder, key)
        except ImgexpError as exc:
            _refuse(exc)

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _open_scope(config)
        self._hold(config.hydra.run.dir, "hydra.run.dir")
        if config.hydra.job.name == "train" and not config.get("ckpt_path"):
            self._fresh(Path(config.hydra.run.dir).expanduser().resolve())

    def _fresh(self, run: Path) -> None:
        """A new training into a run folder that holds one would mix the two (its checkpoints,
        the other's metrics): refused before Hydra writes over its .hydra/."""
        if (run / "checkpoints").is_dir() or (run / "metrics.json").exists():
            _refuse(ImgexpError(f"{run} holds a finished run: resume it with ckpt_path="
                                f"{run / 'checkpoints' / 'last.ckpt'}, or choose another "
                                "hydra.run.dir"))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _open_scope(config)
        self._hold(config.hydra.sweep.dir, "hydra.sweep.dir")

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        _open_scope()  # what the job locks besides (predict's output=, a resumed run) ends with it
        self._hold(config.hydra.runtime.output_dir, "hydra.run.dir")

    def on_job_end(self, config: DictConfig, **kwargs) -> None:
        _close_scope()

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        _close_scope()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        _close_scope()
