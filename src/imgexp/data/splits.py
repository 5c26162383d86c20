"""Find labelled images in folders and split them into train/val/test, stratified and seeded."""

import functools
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgexp.data.names import is_utf8
from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".jfif"}
IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the data root, POSIX separators
    label: str
    split: str = ""


def is_candidate_image(path: Path) -> bool:
    name = path.name
    return (not name.startswith(".") and name not in IGNORED_NAMES
            and path.suffix.lower() in IMAGE_EXTENSIONS)


def skipped_folder_link(path: Path) -> bool:
    """A folder symlink below a data root is not followed, by every stage (as imgexp-prepare
    lists it: "folder symlink not followed"): it may point outside the root (images the data
    hash and a copy of the root do not cover), at another class's images (one image in two
    classes, across splits) or at a parent (a loop)."""
    if not (path.is_symlink() and path.is_dir()):
        return False
    _warn_folder_link(path)
    return True


@functools.cache  # once per link, though the layout and the classes are two walks
def _warn_folder_link(path: Path) -> None:
    log.warning("%s is a folder symlink: not followed (copy or move its images into the data "
                "root to use them)", path)


def skipped_non_utf8(path: Path, folder: Path) -> bool:
    """A file whose name below `folder` is not UTF-8 is left out by every stage (as
    imgexp-prepare lists it: "non-UTF-8 name"): no CSV or JSON a stage writes can name it."""
    if is_utf8(path.relative_to(folder).as_posix()):
        return False
    _warn_non_utf8(path)
    return True


@functools.cache
def _warn_non_utf8(path: Path) -> None:
    log.warning("%r: its name is not UTF-8, left out (rename it: convmv -f latin1 -t utf8 "
                "--notest -r FOLDER)", os.fsencode(path))


def image_files(folder: str | Path, any_extension: bool = False) -> list[Path]:
    """The one walk of an image folder: every file below `folder` (sorted) but hidden files and
    folders and OS clutter, with an image extension unless `any_extension` (predict tries
    every file and reports the ones that do not decode). Folder symlinks are not followed."""
    folder = Path(folder)
    visible = [p for p in sorted(folder.rglob("*"))
               if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return [p for p in visible
            if not skipped_folder_link(p) and p.is_file() and p.name not in IGNORED_NAMES
            and (any_extension or p.suffix.lower() in IMAGE_EXTENSIONS)
            and not skipped_non_utf8(p, folder)]


def _class_files(class_dir: Path, root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in image_files(class_dir))


def scan_class_folders(root: str | Path) -> list[Sample]:
    """One sub-folder per class (nested folders inside a class are included)."""
    root = Path(root)
    if not root.is_dir():
        raise ImgexpError(f"data root {root} does not exist or is not a folder: "
                          "set data.root=/path/to/images (one sub-folder per class)")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                        and not skipped_folder_link(d))
    if not class_dirs:
        raise ImgexpError(f"data root {root} has no class folders: put each class's images in "
                          "its own sub-folder (root/<class>/<image>)")
    samples = []
    for class_dir in class_dirs:
        files = _class_files(class_dir, root)
        if not files:
            raise ImgexpError(f"class folder {class_dir} has no image files "
                              f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}); "
                              "remove it or add images")
        samples += [Sample(f, class_dir.name) for f in files]
    return samples


def _header_readable(path: Path) -> bool:
    try:
        with Image.open(path):
            return True
    except Exception:  # any failure means "not this one"; the caller reports the class
        return False


def check_classes_readable(root: str | Path, samples: list[Sample]) -> None:
    """Fail early on a class whose files are all unreadable (opens headers until one works)."""
    by_class: dict[str, list[str]] = {}
    for s in samples:
        by_class.setdefault(s.label, []).append(s.path)
    for label, paths in by_class.items():
        if not any(_header_readable(Path(root) / p) for p in paths):
            raise ImgexpError(f"class '{label}' has no readable image under {root} "
                              f"({len(paths)} file(s), none decodes): fix or remove them "
                              "(imgexp-prepare lists the reasons)")


# folder name (lower case) -> split; CIFAR, Kaggle sets and split-folders use all of these
SPLIT_FOLDER_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                      "test": "test"}


@dataclass(frozen=True)
class SplitLayout:
    """root/<split>/<class>/... : the split folders found (split -> folder name on disk)."""
    folders: dict[str, str]
    ignored: tuple[str, ...] = ()   # other top-level folders, not read

    def describe(self) -> str:
        """The one line that says how the split is made."""
        found = " ".join(f"{self.folders[s]}/" for s in SPLITS if s in self.folders)
        drawn = f"drawn from {self.folders['train']}/ (stratified, seeded, by the split ratios)"
        if "val" not in self.folders and "test" not in self.folders:
            return f"{found}: val and test {drawn}"
        if "val" not in self.folders:
            return f"{found}: val {drawn}, test = {self.folders['test']}/"
        if "test" not in self.folders:
            return f"{found}: NO TEST SPLIT - no test metrics, the val metrics are the ones to read"
        return f"{found}: taken as they are"


def find_split_layout(root: str | Path) -> SplitLayout | None:
    """The split folders of root (case-insensitive), or None for plain class folders.

    train/ with val/ and/or test/ (other folders beside them are ignored), or train/ alone;
    any other mixture of split-named and other folders is ambiguous and refused.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    folders: dict[str, str] = {}
    others = []
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith(".") or skipped_folder_link(d):
            continue
        split = SPLIT_FOLDER_NAMES.get(d.name.lower())
        if split is None:
            others.append(d.name)
        elif split in folders:
            raise ImgexpError(f"{root} has two {split} folders, {folders[split]}/ and "
                              f"{d.name}/: merge them or move one out")
        else:
            folders[split] = d.name
    if not folders:
        return None
    named = ", ".join(f"{folders[s]}/" for s in SPLITS if s in folders)
    if "train" not in folders:
        raise ImgexpError(f"{root} has {named} but no train/ folder: add train/<class>/... "
                          "(or put the classes directly under the root, without split folders; "
                          f"rename {named} if it is a class)")
    for name in folders.values():  # every stage must read an empty split folder the same way
        if not any(not p.name.startswith(".") for p in (root / name).iterdir()):
            raise ImgexpError(f"{root / name}/ is empty: put its images in {name}/<class>/ or "
                              "remove the folder")
    if len(folders) == 1 and others:
        raise ImgexpError(f"{root} mixes a {named} folder with other folders {others}: move "
                          f"the classes into {named} (or rename the class folder "
                          f"{folders['train']}/ if it is a class)")
    return SplitLayout(folders, tuple(others))


def scan_split_folders(root: str | Path, layout: SplitLayout) -> list[Sample]:
    """The split-folders layout: root/<split>/<class>/<image>, split from its folder."""
    root = Path(root)
    samples = []
    for split in SPLITS:
        if split in layout.folders:
            folder = layout.folders[split]
            samples += [Sample(f"{folder}/{s.path}", s.label, split)
                        for s in scan_class_folders(root / folder)]
    return samples


def complete_layout_split(samples: list[Sample], layout: SplitLayout, ratios, seed: int
                          ) -> list[Sample]:
    """Draw the splits the folders lack from train/: val (share val / (train + val) of
    `ratios`) when there is no val/; val and test when train/ is alone. Stratified, seeded."""
    if "val" in layout.folders:
        return samples
    _check_ratios(ratios)
    train, val, test = ratios
    pool = [s for s in samples if s.split == "train"]
    kept = [s for s in samples if s.split != "train"]
    drawn = stratified_split(pool, (train, val, test if "test" not in layout.folders else 0),
                             seed)
    return sorted(drawn + kept, key=lambda s: (s.label, s.path))


def log_layout(root: str | Path, layout: SplitLayout) -> None:
    log.info("%s has split folders %s", root, layout.describe())
    if layout.ignored:
        log.warning("%s: folder(s) %s beside the split folders are not read", root,
                    list(layout.ignored))


def split_counts(n: int, ratios: tuple[float, ...]) -> list[int]:
    """How many of n items go to each split: largest remainders, train served first.

    Small classes fill train, then val, then test, so a class with one image is trainable.
    """
    raw = np.asarray(ratios, dtype=float) / sum(ratios) * n
    counts = np.floor(raw).astype(int)
    remainder = n - counts.sum()
    order = sorted(range(len(ratios)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[:remainder]:
        counts[i] += 1
    # every split with a positive ratio should get one image before any gets a second,
    # in train -> val -> test order
    for i in range(len(ratios)):
        if counts[i] == 0 and ratios[i] > 0:
            donor = int(np.argmax(counts))
            if counts[donor] > 1 and donor != i:
                counts[donor] -= 1
                counts[i] += 1
    return counts.tolist()


def _check_ratios(ratios) -> None:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ImgexpError(f"split ratios must be three non-negative numbers (train, val, test), "
                          f"got {list(ratios)}")


def check_split_ratios(ratios, key: str) -> None:
    """A user's split ratios: the shares of train, val and test, adding up to 1. Weights that
    did not were once rescaled without a word ([0.2, 0.3, 0.2] gave train 28%, not 20%)."""
    _check_ratios(ratios)
    if abs(sum(ratios) - 1) > 1e-6:
        raise ImgexpError(f"{key}={list(ratios)} adds up to {sum(ratios):g}, not 1: give the "
                          "shares of train, val and test (e.g. [0.7, 0.15, 0.15])")


def stratified_split(samples: list[Sample], ratios=(0.7, 0.15, 0.15), seed: int = 0,
                     ) -> list[Sample]:
    """Assign each sample a split, class by class; deterministic for a given seed and input."""
    _check_ratios(ratios)
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: (s.label, s.path)):
        by_class.setdefault(s.label, []).append(s)
    out = []
    for label, items in by_class.items():
        counts = split_counts(len(items), tuple(ratios))
        if len(items) < sum(1 for r in ratios if r > 0):
            warnings.warn(f"class '{label}' has only {len(items)} image(s): "
                          f"they go to train first ({dict(zip(SPLITS, counts, strict=True))})",
                          stacklevel=2)
        order = rng.permutation(len(items))
        bounds = np.cumsum([0, *counts])
        for k, split in enumerate(SPLITS):
            out += [Sample(items[j].path, label, split) for j in order[bounds[k]:bounds[k + 1]]]
    return sorted(out, key=lambda s: (s.label, s.path))


def kfold_split(samples: list[Sample], k: int, fold: int, seed: int = 0) -> list[Sample]:
    """Cross-validation: stratified k folds over train+val; fold `fold` is val, the others
    train; test samples keep their split, so every fold is tested on the same images."""
    from sklearn.model_selection import StratifiedKFold

    if k < 2:
        raise ImgexpError(f"data.kfold={k}: use 2 or more folds, or null for the plain split")
    if not 0 <= fold < k:
        raise ImgexpError(f"data.fold={fold} is out of range for data.kfold={k}: use 0..{k - 1}")
    pool = sorted((s for s in samples if s.split in ("train", "val")),
                  key=lambda s: (s.label, s.path))
    kept = [s for s in samples if s.split not in ("train", "val")]
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    try:
        _, val_index = list(folds.split(np.zeros(len(pool)), [s.label for s in pool]))[fold]
    except ValueError as exc:
        raise ImgexpError(f"data.kfold={k}: {exc}; use fewer folds") from exc
    val = set(val_index.tolist())
    return [Sample(s.path, s.label, "val" if i in val else "train")
            for i, s in enumerate(pool)] + kept
