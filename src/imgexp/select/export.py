"""Put the selected images in a folder of their own, keeping class sub-folders.

The source is only ever read: copies are written to a temporary name then renamed, links
point at the source, and an export folder inside the source folder is refused.
"""

import filecmp
import logging
import os
from pathlib import Path

from imgexp.atomic import PLACEMENT_MODES, place_file
from imgexp.errors import ImgexpError
from imgexp.folder_lock import hold_folder
from imgexp.paths import inside
from imgexp.progress import progress

log = logging.getLogger(__name__)
MODES = ("none", *PLACEMENT_MODES)




def _already_there(src: Path, dst: Path) -> bool:
    if not dst.exists():
        return False
    if os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False):
        return True
    raise ImgexpError(f"{dst} already exists with other content: choose an empty "
                      "select.export_dir or remove that file")


def export_selection(root: Path, rel_paths: list[str], mode: str, export_dir: str | None,
                     show_progress: bool = True) -> dict:
    """-> {exported, already_there, export_dir}; rel_paths are relative to root."""
    if mode not in MODES:
        raise ImgexpError(f"select.export={mode!r} is not an option: use one of {MODES}")
    if mode == "none":
        return {"exported": 0, "already_there": 0, "export_dir": None}
    if not export_dir:
        raise ImgexpError(f"select.export={mode} needs select.export_dir=/path/to/new/folder")
    target, source = Path(export_dir).resolve(), Path(root).resolve()
    if target == source or source in target.parents:
        raise ImgexpError(f"select.export_dir={export_dir} is inside the source folder {root}: "
                          "the source is never written to; pick a folder outside it")
    # every destination checked before the first is written: a manifest path with `..` or
    # an absolute one would otherwise land outside export_dir
    places = [(source / rel, inside(target, rel, "manifest path")) for rel in rel_paths]
    hold_folder(target, "select.export_dir")
    done = skipped = 0
    for src, dst in progress(places, desc=f"export ({mode})", unit="img",
                             enabled=show_progress):
        dst.parent.mkdir(parents=True, exist_ok=True)
        if _already_there(src, dst):
            skipped += 1
            continue
        place_file(src, dst, mode, "select.export")
        done += 1
    log.info("exported %d images to %s (%d already there)", done, target, skipped)
    return {"exported": done, "already_there": skipped, "export_dir": str(target)}
