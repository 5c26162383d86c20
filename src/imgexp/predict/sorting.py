"""Place an input image into output/<class>/ as a copy, hard link or symbolic link, never
replacing a file already there (the CBIR seed's data/result/<class>/ folders)."""

import json
import os
import shlex
from pathlib import Path

from imgexp.atomic import PLACEMENT_MODES, place_file, write_json_atomic
from imgexp.data.names import name_problem
from imgexp.errors import ImgexpError
from imgexp.paths import inside

MODES = (*PLACEMENT_MODES, "none")
# written before the first image is placed, removed once predictions.csv is published: a run
# killed (or stopped by a full disk) in between leaves it, and a rerun would otherwise add
# every image again as a _1 copy
INCOMPLETE = ".imgexp-predict-incomplete"


def check_unfinished(output: Path) -> None:
    """Refuse an output folder a predict run started and did not finish, with the command
    that removes what it wrote (the class folders it created and the marker, nothing else)."""
    marker = output / INCOMPLETE
    if not marker.exists():
        return
    try:
        created = json.loads(marker.read_text())["created"]
    except (OSError, ValueError, KeyError, TypeError):
        created = []
    # the marker is a file anyone can edit: only plain folder names go into the command
    left = [n for n in created if name_problem(n) is None and (output / n).is_dir()]
    command = " ".join(shlex.quote(str(output / n)) for n in [*left, INCOMPLETE])
    raise ImgexpError(f"{output} holds the output of a predict run that did not finish: "
                      f"remove it with `rm -r -- {command}` or choose a new output= folder")


def begin_output(output: Path, folders: list[str]) -> None:
    """Mark `output` unfinished, naming the class folders this run is about to create."""
    output.mkdir(parents=True, exist_ok=True)
    created = [n for n in folders if not (output / n).exists()]
    write_json_atomic(output / INCOMPLETE, {"pid": os.getpid(), "created": created})


def finish_output(output: Path) -> None:
    (output / INCOMPLETE).unlink()


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
