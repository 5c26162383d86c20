"""Materialise the split as folders (split-folders' layout) for tools that only read folders.

export/<split>/<label>/<path inside its class folder>; when a class map merged several
folders into one label, the source folder name is kept as a sub-folder so names cannot clash.
A file whose extension lies about its content gets the right one appended, because folder
readers pick files by extension.
"""

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from imgexp.atomic import PLACEMENT_MODES, place_file, publish
from imgexp.errors import ImgexpError
from imgexp.paths import inside
from imgexp.prepare.sniff import CANONICAL_EXTENSION, EXTENSION_FORMATS

MODES = PLACEMENT_MODES


@dataclass(frozen=True)
class ExportItem:
    path: str            # relative to the root
    inside: str          # relative to its class folder
    class_name: str
    label: str
    split: str
    format: str          # decoded format, e.g. JPEG


def export_split(root: Path, items: list[ExportItem], dest: Path, mode: str) -> int:
    if mode not in MODES:
        raise ImgexpError(f"prepare.export={mode!r} is not an option: use one of {list(MODES)}")
    if dest.exists():
        raise ImgexpError(f"export folder {dest} already exists: remove it or choose another "
                          "prepare.export_dir")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for item in items:
            target = inside(tmp, export_path(item), "export path")
            target.parent.mkdir(parents=True, exist_ok=True)
            place_file(root / item.path, target, mode, "prepare.export")
        publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(items)


def export_path(item: ExportItem) -> PurePosixPath:
    folder = PurePosixPath(item.split, item.label)
    if item.label != item.class_name:
        folder /= item.class_name
    name = PurePosixPath(item.inside)
    if EXTENSION_FORMATS.get(name.suffix.lower()) != item.format:
        name = name.with_name(name.name + CANONICAL_EXTENSION.get(item.format, ""))
    return folder / name

