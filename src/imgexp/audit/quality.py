"""Poor images: dark, overexposed, blurry, low-information, tiny, odd aspect ratio, and grey
images in a colour set. Each check is one rule over the statistics in `pixels`, with its
threshold in `audit.quality`; `score` says how far past the threshold an image is (0..1)."""

import numpy as np
from omegaconf import DictConfig

from imgexp.audit.pixels import stat


def quality_issues(rows: np.ndarray, q: DictConfig) -> list[tuple[int, str, float]]:
    """(row index, issue, score), worst first within each issue."""
    w, h = stat(rows, "width"), stat(rows, "height")
    short = np.minimum(w, h)
    brightness, contrast = stat(rows, "brightness"), stat(rows, "contrast")
    sharpness = stat(rows, "sharpness")
    aspect = np.maximum(w, h) / np.maximum(short, 1)
    grayscale = stat(rows, "grayscale") > 0.5
    # tiny and blurry are relative to the collection: a set of 8x8 digits is not all "tiny",
    # and smooth drawings are not all "blurry"
    median_short = float(np.median(short))
    median_sharp = float(np.median(sharpness))
    checks = {
        "dark": (brightness < q.dark_below, 1 - brightness / max(q.dark_below, 1e-9)),
        "overexposed": (stat(rows, "bright_fraction") > q.overexposed_fraction,
                        stat(rows, "bright_fraction")),
        "low_information": (contrast < q.low_information_below,
                            1 - contrast / max(q.low_information_below, 1e-9)),
        "blurry": (sharpness < q.blurry_fraction * median_sharp,
                   1 - sharpness / max(q.blurry_fraction * median_sharp, 1e-9)),
        "tiny": ((short < q.tiny_fraction * median_short) | (short < q.tiny_below),
                 1 - short / max(median_short, 1)),
        "odd_aspect": (aspect > q.max_aspect, 1 - q.max_aspect / aspect),
        # only in a set that is mostly colour: a grey scan among colour photos stands out
        "grayscale": (grayscale & (grayscale.mean() < q.colour_set_share_gray),
                      np.ones(len(rows))),
    }
    out = []
    for issue, (flag, score) in checks.items():
        # one name per cause: a uniform image is not also blurry, a dark one not also uniform
        if issue == "low_information":
            flag = flag & ~checks["dark"][0] & ~checks["overexposed"][0]
        if issue == "blurry":
            flag = flag & ~checks["low_information"][0] & ~checks["dark"][0]
        if issue == "grayscale":  # a nearly black colour photo has no colour left to see
            flag = flag & ~checks["dark"][0] & ~checks["low_information"][0]
        idx = np.flatnonzero(flag)
        out += sorted(((int(i), issue, float(np.clip(score[i], 0, 1))) for i in idx),
                      key=lambda t: -t[2])
    return out
