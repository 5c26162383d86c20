"""The built-in dataset: scikit-learn's real handwritten digits written as PNG class folders.

Exported once, atomically: files go to a temporary sibling folder that is renamed into place
when complete, so a half-written export is never mistaken for a finished one.
"""

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgexp.atomic import publish
from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)
COMPLETE_MARKER = ".export-complete"


def ensure_digits(root: str | Path) -> Path:
    """Export the 1,797 digits to root/<digit>/<index>.png unless already complete."""
    root = Path(root)
    if (root / COMPLETE_MARKER).exists():
        return root
    if root.is_dir() and any(p.is_file() for p in root.rglob("*")):
        # never remove a folder holding files this code did not finish writing: they are the
        # user's (its exports are renamed into place whole, so no partial one has files)
        raise ImgexpError(f"data.root={root} holds files but is not the built-in digits (no "
                          f"{COMPLETE_MARKER}): for your own images use data=folder "
                          f"data.root={root}; for the digits, point data.root at a new folder")
    from sklearn.datasets import load_digits

    log.info("Exporting scikit-learn digits to %s (first use)", root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        digits = load_digits()
        # 8x8 images with values 0..16, white digit on black: scale to 0..255.
        images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
        for i, (img, target) in enumerate(zip(images, digits.target, strict=True)):
            class_dir = tmp / str(target)
            class_dir.mkdir(exist_ok=True)
            Image.fromarray(img, mode="L").save(class_dir / f"{i:04d}.png")
        (tmp / COMPLETE_MARKER).write_text(f"{len(images)} images\n")
        if (root / COMPLETE_MARKER).exists():
            # another process (a second sweep worker) published its export meanwhile, and
            # may be reading it: keep that one, drop ours
            shutil.rmtree(tmp)
            return root
        if root.exists() and not any(p.is_file() for p in root.rglob("*")):
            shutil.rmtree(root)  # empty class folders of an interrupted older export
        try:
            publish(tmp, root)
        except OSError:  # a complete export was renamed into place just before ours
            if not (root / COMPLETE_MARKER).exists():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root
