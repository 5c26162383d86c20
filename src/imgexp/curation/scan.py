"""List every file under a data root: candidates to check, and the ones ignored with why.

Every file is accounted for: a candidate (later accepted or rejected) or an ignored entry
(hidden, system litter, outside the class folders, a folder symlink not followed). Files are
not filtered by extension: a PNG named `.txt` is still a PNG, and a text file named `.jpg`
must be reported, not skipped. Nested folders inside a class belong to that class.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from imgexp.data.splits import IGNORED_NAMES, SPLITS, has_split_folders
from imgexp.errors import ImgexpError


@dataclass(frozen=True)
class Candidate:
    path: str           # relative to the root, POSIX separators
    class_name: str     # the class folder it sits in
    split: str = ""     # the split folder it sits in, when the root has train/ val/ test/


@dataclass
class Scan:
    root: Path
    split_layout: bool                       # root/<split>/<class>/... rather than root/<class>
    candidates: list[Candidate] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)   # (path, why)
    class_names: list[str] = field(default_factory=list)           # every class folder seen


def scan_root(root: str | Path) -> Scan:
    root = Path(root)
    if not root.is_dir():
        raise ImgexpError(f"data root {root} does not exist or is not a folder: set "
                          "data.root=/path/to/images (one sub-folder per class)")
    scan = Scan(root, has_split_folders(root))
    tops = [(split, root / split) for split in SPLITS] if scan.split_layout else [("", root)]
    for split, top in tops:
        if top.is_dir():
            _scan_classes(scan, top, split)
    if scan.split_layout:
        _ignore_outside(scan, root, keep=set(SPLITS))
    scan.class_names = sorted(set(scan.class_names))
    if not scan.class_names:
        raise ImgexpError(f"data root {root} has no class folders: put each class's images in "
                          "its own sub-folder (root/<class>/<image>)")
    scan.candidates.sort(key=lambda c: c.path)
    scan.ignored.sort()
    return scan


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _scan_classes(scan: Scan, top: Path, split: str) -> None:
    with os.scandir(top) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            path = Path(entry.path)
            if entry.name.startswith(".") or entry.name in IGNORED_NAMES:
                scan.ignored.append((_rel(path, scan.root), _hidden_reason(entry)))
            elif entry.is_dir(follow_symlinks=False):
                scan.class_names.append(entry.name)
                _walk_class(scan, path, entry.name, split)
            elif entry.is_symlink() and entry.is_dir():
                scan.ignored.append((_rel(path, scan.root), "ignored: folder symlink not followed"))
            elif not split:  # files beside the class folders (README, LICENSE, ...)
                scan.ignored.append((_rel(path, scan.root), "ignored: not inside a class folder"))
            else:
                scan.ignored.append((_rel(path, scan.root),
                                     "ignored: not inside a class folder of its split"))


def _ignore_outside(scan: Scan, root: Path, keep: set[str]) -> None:
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name not in keep:
                scan.ignored.append((entry.name, "ignored: outside the train/ val/ test/ folders"))


def _hidden_reason(entry: os.DirEntry) -> str:
    if entry.name in IGNORED_NAMES:
        return f"ignored: system file {entry.name}"
    if entry.is_dir(follow_symlinks=False):
        return "ignored: hidden folder (not scanned)"
    return "ignored: hidden file"


def _walk_class(scan: Scan, class_dir: Path, class_name: str, split: str) -> None:
    def unreadable(exc: OSError) -> None:
        scan.ignored.append((_rel(Path(exc.filename), scan.root),
                             f"ignored: folder cannot be listed ({exc.strerror})"))

    for folder, dirs, files in os.walk(class_dir, onerror=unreadable):
        folder = Path(folder)
        for name in sorted(dirs):
            path = folder / name
            if name.startswith("."):
                scan.ignored.append((_rel(path, scan.root), "ignored: hidden folder (not scanned)"))
            elif path.is_symlink():
                scan.ignored.append((_rel(path, scan.root), "ignored: folder symlink not followed"))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            rel = _rel(folder / name, scan.root)
            if name in IGNORED_NAMES:
                scan.ignored.append((rel, f"ignored: system file {name}"))
            elif name.startswith("."):
                scan.ignored.append((rel, "ignored: hidden file"))
            else:
                scan.candidates.append(Candidate(rel, class_name, split))
