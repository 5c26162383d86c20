"""Image files made on the fly for data tests: one image, class folders, split-folder layouts."""

from pathlib import Path

import numpy as np
from PIL import Image


def save_image(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def class_folders(root: Path, counts: dict[str, int], size=12) -> Path:
    """root/<class>/<i>.png, random pixels, `counts[class]` images each."""
    rng = np.random.default_rng(0)
    for label, n in counts.items():
        for i in range(n):
            save_image(Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)),
                       root / label / f"{i}.png")
    return root


def split_layout(root: Path, folders: dict[str, int]) -> Path:
    """root/<split folder>/{a,b}/: class a twice the size of class b in each."""
    for folder, n in folders.items():
        class_folders(root / folder, {"a": 2 * n, "b": n})
    return root
