"""Atomic writes and file placement for every stage: a file is written beside its final name,
flushed to disk and renamed over it once complete, so readers never see half a file and a
killed run (or a power cut) leaves the previous version intact. The one implementation of
"write a file safely": checkpoints (training/checkpoint_io.py), cache chunks and reports all
come through here."""

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from imgexp.errors import ImgexpError, write_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp make owner-only files (0600/0700): a result renamed into place gets the mode
# any new file of the user gets instead, so colleagues on a shared file system can read it
FILE_MODE, DIR_MODE = 0o666 & ~_umask(), 0o777 & ~_umask()


def publish(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file or folder (from mkstemp/mkdtemp) over `path`, with the
    user's usual permissions."""
    os.chmod(tmp, DIR_MODE if Path(tmp).is_dir() else FILE_MODE)
    os.replace(tmp, path)


def _fsync(path: str | Path) -> None:
    # a directory is opened read-only to sync it: its entry for the renamed file then survives
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # some network and FUSE file systems cannot sync a folder: the rename stands anyway
        if not (Path(path).is_dir() and exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.ENOSYS)):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix: writers that pick a format from it,
    such as savefig, still work); it replaces `path` when the block ends without error.

    Beside, not in /tmp: a rename across file systems is a copy that a kill leaves half done.
    A full disk or a folder that cannot be written is a one-line ImgexpError naming the
    folder; the temporary file is removed and the previous `path` stays as it was.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
        os.close(fd)
        yield Path(tmp)
        _fsync(tmp)
        publish(tmp, path)
        _fsync(path.parent)
    except BaseException as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if error := write_error(exc, path.parent):
            raise error from exc
        raise


@contextmanager
def atomic_text(path: str | Path):
    """A text file, UTF-8; names that are not valid UTF-8 keep their bytes (surrogateescape)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8",
                                        errors="surrogateescape") as f:
        yield f


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_text(path) as f:
        f.write(text)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes | memoryview) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def write_text_once(path: str | Path, text: str) -> str:
    """Publish `text` at `path` unless a file is already there, and return what is there: a
    hard link never replaces, so of processes racing (shards on other machines) the first wins
    and every one reads its text."""
    path = Path(path)
    if path.exists():
        return path.read_text()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, FILE_MODE)
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process was first: its text it is
    except OSError as exc:
        if error := write_error(exc, path.parent):
            raise error from exc
        raise
    finally:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
    return path.read_text()


def write_json_atomic(path: str | Path, data) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_frame_atomic(df: pd.DataFrame, path: str | Path, index_label: str | None = None
                       ) -> Path:
    """A CSV table; its index only as a column named `index_label`, when given."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=index_label is not None, index_label=index_label)
    return Path(path)


# how place_file puts a file in place; stages add "none" (do not place) where it means something
PLACEMENT_MODES = ("copy", "hardlink", "symlink")


def place_file(src: Path, dst: Path, mode: str, option: str) -> None:
    """Put `src` at `dst` as a copy, hard link or symbolic link; never replaces a file.

    A copy is written beside `dst` and then hard-linked into place, so `dst` is never half a
    file and an existing one raises FileExistsError (callers pick another name or skip).
    `option` names the config key in the error for a cross-device hard link.
    """
    if mode == "copy":
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
        os.close(fd)
        try:
            shutil.copy2(src, tmp)
            os.link(tmp, dst)
        finally:
            os.unlink(tmp)
    elif mode == "hardlink":
        try:
            os.link(src, dst)
        except FileExistsError:
            raise
        except OSError as exc:
            raise ImgexpError(f"cannot hard-link {src} into {dst.parent} ({exc.strerror}): hard "
                              f"links need one file system; use {option}=copy or symlink"
                              ) from None
    elif mode == "symlink":
        os.symlink(Path(src).resolve(), dst)
    else:
        raise ValueError(f"unknown placement mode {mode!r}")
