"""List every file under a data root: candidates to check, and the ones ignored with why.

Every file is accounted for: a candidate (later accepted or rejected) or an ignored entry
(hidden, system litter, outside the class folders, a folder symlink not followed). Files are
not filtered by extension: a PNG named `.txt` is still a PNG, and a text file named `.jpg`
must be reported, not skipped. Nested folders inside a class belong to that class.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from imgexp.data.splits import IGNORED_NAMES, SplitLayout, find_split_layout, log_layout
from imgexp.errors import ImgexpError


@dataclass(frozen=True)
class Candidate:
    path: str           # relative to the root, POSIX separators
    class_name: str     # the class folder it sits in
    split: str = ""     # the split (train/val/test) of its split folder, if the root has them


@dataclass
class Scan:
    root: Path
    layout: SplitLayout | None               # root/<split>/<class>/... rather than root/<class>
    candidates: list[Candidate] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)   # (path, why)
    class_names: list[str] = field(default_factory=list)           # every class folder seen


def scan_root(root: str | Path) -> Scan:
    root = Path(root)
    if not root.is_dir():
        raise ImgexpError(f"data root {root} does not exist or is not a folder: set "
                          "data.root=/path/to/images (one sub-folder per class)")
    scan = Scan(root, find_split_layout(root))
    if scan.layout:
        log_layout(root, scan.layout)
        for split, folder in scan.layout.folders.items():
            _scan_classes(scan, root / folder, split)
        _ignore_outside(scan, root, keep=set(scan.layout.folders.values()))
    else:
        _scan_classes(scan, root, "")
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
                scan.ignored.append((entry.name, "ignored: outside the split folders"))


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
