"""Place an input image into output/<class>/ as a copy, hard link or symbolic link, never
replacing a file already there (the CBIR seed's data/result/<class>/ folders)."""

from pathlib import Path

from imgexp.atomic import PLACEMENT_MODES, place_file
from imgexp.errors import ImgexpError
from imgexp.paths import inside

MODES = (*PLACEMENT_MODES, "none")


def place(src: Path, output: Path, label: str, mode: str) -> Path | None:
    """output/<label>/<src name>, or <stem>_1<ext>, <stem>_2<ext>... when that name is taken."""
    if mode == "none":
        return None
    folder = inside(output, Path(label) / src.name, "class name").parent
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = src.stem, src.suffix
    for n in range(100_000):
        dest = folder / (src.name if n == 0 else f"{stem}_{n}{suffix}")
        try:
            place_file(src, dest, mode, "predict.mode")
            return dest
        except FileExistsError:
            continue
        except OSError as exc:
            raise ImgexpError(f"cannot write {dest}: {exc.strerror}") from None
    raise ImgexpError(f"{folder} already holds 100000 files named like {src.name}")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ImgexpError(f"predict.mode={mode!r} is not an option: use one of {list(MODES)}")
