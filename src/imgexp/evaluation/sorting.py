"""Place an input image into output/<class>/ as a copy, hard link or symbolic link, never
replacing a file already there (the CBIR seed's data/result/<class>/ folders)."""

import os
import shutil
from pathlib import Path

from imgexp.errors import ImgexpError

MODES = ("copy", "hardlink", "symlink", "none")


def _copy_exclusive(src: Path, dest: Path) -> None:
    # "xb" fails if dest exists: no window in which another file could be overwritten
    with open(src, "rb") as fin, open(dest, "xb") as fout:
        shutil.copyfileobj(fin, fout)
    shutil.copystat(src, dest)


def _place_once(src: Path, dest: Path, mode: str) -> None:
    if mode == "copy":
        _copy_exclusive(src, dest)
    elif mode == "hardlink":
        os.link(src, dest)
    elif mode == "symlink":
        os.symlink(src.resolve(), dest)


def place(src: Path, folder: Path, mode: str) -> Path | None:
    """folder/<src name>, or <stem>_1<ext>, <stem>_2<ext>... when that name is taken."""
    if mode == "none":
        return None
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = src.stem, src.suffix
    for n in range(100_000):
        dest = folder / (src.name if n == 0 else f"{stem}_{n}{suffix}")
        try:
            _place_once(src, dest, mode)
            return dest
        except FileExistsError:
            continue
        except OSError as exc:
            if mode == "hardlink":
                raise ImgexpError(f"cannot hard-link {src} into {folder} ({exc.strerror}): input "
                                  "and output must be on the same file system; use "
                                  "predict.mode=copy or symlink") from None
            raise ImgexpError(f"cannot write {dest}: {exc.strerror}") from None
    raise ImgexpError(f"{folder} already holds 100000 files named like {src.name}")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ImgexpError(f"predict.mode={mode!r} is not an option: use one of {list(MODES)}")
