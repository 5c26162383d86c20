"""Labels (class folders, optionally relabelled) and splits, a duplicate group at a time.

Copies of one image must land in one split, or the test set measures memory instead of
generalisation: the split is drawn over each group's kept copy (with the project's stratified,
seeded split) and the other copies follow it.
"""

import warnings
from collections.abc import Mapping

from imgexp.data.splits import Sample, stratified_split
from imgexp.errors import ImgexpError

OTHER_CLASSES = "*"


def map_labels(class_names: list[str], class_map: Mapping[str, str] | None) -> dict[str, str]:
    """class folder -> label; `class_map` keys are folder names, "*" stands for all others."""
    class_map = dict(class_map or {})
    unknown = sorted(set(class_map) - set(class_names) - {OTHER_CLASSES})
    if unknown:
        raise ImgexpError(f"prepare.class_map names class folder(s) {unknown} that do not "
                          f"exist; the folders are {class_names}")
    default = class_map.get(OTHER_CLASSES)
    return {name: str(class_map.get(name, default if default is not None else name))
            for name in class_names}


def assign_splits(labels: dict[str, str], folder_splits: dict[str, str],
                  kept_of: dict[str, str], ratios, seed: int, keep_existing: bool,
                  ) -> tuple[dict[str, str], list[str]]:
    """path -> split for every path in `labels`, and the warnings to show.

    `kept_of` maps each duplicate to its group's kept copy; `folder_splits` holds the split
    folder each file sits in (empty when the root has no split folders).
    """
    kept = [p for p in labels if p not in kept_of]
    messages: list[str] = []
    if keep_existing and any(folder_splits.values()):
        split_of = {p: folder_splits[p] for p in kept}
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            drawn = stratified_split([Sample(p, labels[p]) for p in kept], tuple(ratios), seed)
        messages += [str(w.message) for w in caught]
        split_of = {s.path: s.split for s in drawn}
    moved = 0
    for path, kept_path in kept_of.items():
        if path in labels:
            split_of[path] = split_of[kept_path]
            moved += keep_existing and folder_splits.get(path, "") not in ("", split_of[path])
    if moved:
        messages.append(f"{moved} duplicate(s) moved out of their split folder into their kept "
                        "copy's split, so no image is in two splits")
    return split_of, messages
