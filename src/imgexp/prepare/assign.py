"""Labels (class folders, optionally relabelled) and splits, a duplicate group at a time.

Copies of one image must land in one split, or the test set measures memory instead of
generalisation: the split is drawn over each group's kept copy (with the project's stratified,
seeded split) and the other copies follow it.
"""

import warnings

from imgexp.data.splits import Sample, SplitLayout, complete_layout_split, stratified_split


def assign_splits(labels: dict[str, str], folder_splits: dict[str, str],
                  kept_of: dict[str, str], ratios, seed: int, layout: SplitLayout | None,
                  ) -> tuple[dict[str, str], list[str]]:
    """path -> split for every path in `labels`, and the warnings to show.

    `kept_of` maps each duplicate to its group's kept copy; `folder_splits` holds the split
    folder each file sits in; `layout` (the split folders to keep, None to draw every split)
    decides which splits are drawn from train/.
    """
    kept = [p for p in labels if p not in kept_of]
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if layout is not None:
            drawn = complete_layout_split([Sample(p, labels[p], folder_splits[p]) for p in kept],
                                          layout, tuple(ratios), seed)
        else:
            drawn = stratified_split([Sample(p, labels[p]) for p in kept], tuple(ratios), seed)
    messages += [str(w.message) for w in caught]
    split_of = {s.path: s.split for s in drawn}
    moved = 0
    for path, kept_path in kept_of.items():
        if path in labels:
            split_of[path] = split_of[kept_path]
            moved += layout is not None and folder_splits[path] != folder_splits[kept_path]
    if moved:
        messages.append(f"{moved} duplicate(s) moved out of their split folder into their kept "
                        "copy's split, so no image is in two splits")
    return split_of, messages
