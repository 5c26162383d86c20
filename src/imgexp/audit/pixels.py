"""What the audit reads from each image's pixels, once, as one float32 row per image.

The row holds the image's facts (size, mode, EXIF camera), its quality statistics and two small grey
pictures: a 16x16 blurred one (a unit vector, compared by cosine to find candidate pairs) and a
32x32 one that `neighbours.verify` aligns to confirm a pair. Both are normalised to zero mean
and unit variance, so brightness and contrast changes do not matter. Rows are keyed by file
content in the feature cache (imgexp.features.cache), so a second audit decodes nothing.
"""

import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from imgexp.data.image_io import UnreadableImage, open_image
from imgexp.features.cache import FolderCache

# bump when the row's meaning changes: the cache key, so old rows are never mixed in
IDENTITY = "audit-pixels-v2"
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM", "MPO", "ICO")
STATS = ("width", "height", "grayscale", "format", "brightness", "contrast", "dark_fraction",
         "bright_fraction", "sharpness", "entropy", "camera")
SEARCH, ALIGN = 16, 32
SEARCH_AT = len(STATS)
ALIGN_AT = SEARCH_AT + SEARCH * SEARCH
WIDTH = ALIGN_AT + ALIGN * ALIGN
# sharpness is measured at a common size so that a big sharp photo and a small one compare
SHARPNESS_SIDE = 256
ORIENTATION, MAKE, MODEL = 0x0112, 0x010F, 0x0110  # EXIF tags


def camera_code(make: str, model: str) -> float:
    """The EXIF camera as a number the row can hold: 0 for none, else a 24-bit hash of
    make and model (exact in float32), the same for every image of one camera."""
    name = f"{make.strip()}|{model.strip()}"
    return 0.0 if name == "|" else float(zlib.crc32(name.encode()) & 0xFFFFFF or 1)


def _unit(gray: np.ndarray) -> np.ndarray:
    gray = gray - gray.mean()
    return gray / (np.linalg.norm(gray) + 1e-6)


def describe(path: Path) -> np.ndarray | None:
    """The image's row, or None when it cannot be decoded (reported as unreadable)."""
    try:
        with Image.open(path) as raw:
            fmt, mode, (w, h) = raw.format or "", raw.mode, raw.size
            exif = raw.getexif()
            if exif.get(ORIENTATION, 1) in (5, 6, 7, 8):  # shown turned a quarter
                w, h = h, w
            camera = camera_code(str(exif.get(MAKE, "")), str(exif.get(MODEL, "")))
        # big JPEGs are DCT-scaled while decoding: every statistic below works at <= ~512 px
        img = open_image(path, SHARPNESS_SIDE)
    except Exception:  # noqa: BLE001 - any decoder failure means "unreadable", listed not fatal
        return None
    rgb = np.asarray(img, dtype=np.uint8)
    channels = rgb.astype(np.int16)
    grayscale = mode in ("L", "LA", "1", "I", "I;16", "F") or (
        np.abs(channels[..., 0] - channels[..., 1]).max() <= 2
        and np.abs(channels[..., 1] - channels[..., 2]).max() <= 2)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = SHARPNESS_SIDE / max(gray.shape)
    if scale < 1:
        small = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)),
                                  max(1, round(gray.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
    else:
        small = gray
    sharpness = float(cv2.Laplacian(small.astype(np.float32), cv2.CV_32F).var())
    counts = np.bincount(gray.ravel(), minlength=256) / gray.size
    entropy = float(-(counts[counts > 0] * np.log2(counts[counts > 0])).sum())
    g = gray.astype(np.float32)
    search = cv2.GaussianBlur(cv2.resize(g, (SEARCH, SEARCH), interpolation=cv2.INTER_AREA),
                              (0, 0), 1.0)
    align = cv2.GaussianBlur(cv2.resize(g, (ALIGN, ALIGN), interpolation=cv2.INTER_AREA),
                             (0, 0), 1.0)
    stats = [w, h, float(grayscale), FORMATS.index(fmt) if fmt in FORMATS else -1,
             float(g.mean()), float(g.std()), float((gray < 30).mean()),
             float((gray > 245).mean()), sharpness, entropy, camera]
    return np.concatenate([np.asarray(stats, np.float32), _unit(search).ravel(),
                           _unit(align).ravel()]).astype(np.float32)


def why_unreadable(path: Path) -> str:
    """What stops `describe` on a file, for unreadable.csv: the decoder's reason, or the
    header's when the pixels decode but the header or EXIF does not parse."""
    try:
        open_image(path, SHARPNESS_SIDE)
        with Image.open(path) as raw:
            raw.getexif()
    except UnreadableImage as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever describe met, named for the user
        return f"unreadable header ({type(exc).__name__})"
    return "cannot decode"


def describe_all(paths: list[Path], hashes: list[str | None], cache_dir: Path | None,
                 threads: int = 4) -> np.ndarray:
    """Rows for every path (NaN rows for unreadable files), from the cache where it has them."""
    rows = np.full((len(paths), WIDTH), np.nan, dtype=np.float32)
    caches: dict[Path, FolderCache] = {}
    tables: dict[Path, dict[str, np.ndarray]] = {}
    todo = []
    for i, (path, sha) in enumerate(zip(paths, hashes, strict=True)):
        if sha is None:
            continue
        if cache_dir is not None and path.parent not in caches:
            caches[path.parent] = FolderCache(cache_dir, IDENTITY, path.parent)
            tables[path.parent] = caches[path.parent].load()
        cached = tables[path.parent].get(sha) if cache_dir is not None else None
        if cached is not None and cached.shape == (WIDTH,):
            rows[i] = cached
        else:
            todo.append(i)
    # PIL and OpenCV release the GIL while decoding and resizing
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i, row in zip(todo, pool.map(describe, [paths[i] for i in todo]), strict=True):
            if row is not None:
                rows[i] = row
    if cache_dir is not None:
        new: dict[Path, list[int]] = {}
        for i in todo:
            if not np.isnan(rows[i, 0]):
                new.setdefault(paths[i].parent, []).append(i)
        for folder, idx in new.items():
            caches[folder].append([hashes[i] for i in idx], rows[idx])
            caches[folder].compact(hashes[i] for i in range(len(paths))
                                   if paths[i].parent == folder and hashes[i])
    return rows


def stat(rows: np.ndarray, name: str) -> np.ndarray:
    return rows[:, STATS.index(name)]


def search_vectors(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows[:, SEARCH_AT:ALIGN_AT])


def align_pictures(rows: np.ndarray) -> np.ndarray:
    return rows[:, ALIGN_AT:].reshape(-1, ALIGN, ALIGN)


def label_vectors(rows: np.ndarray) -> np.ndarray:
    """Features for the label check without a checkpoint: HOG of the 32x32 pictures (the CBIR
    seed's best descriptor on photos), L2-normalised, beside the 16x16 pictures. Against the
    16x16 pictures alone, with 5% of the labels flipped, they raise the precision on photos and
    on digits at about the same recall (benchmarks/bench_audit.py)."""
    from imgexp.models.descriptors import hog_features

    hogs = hog_features(align_pictures(rows), orientations=9)
    hogs /= np.linalg.norm(hogs, axis=1, keepdims=True) + 1e-9
    return np.hstack([hogs, search_vectors(rows)]).astype(np.float32)
