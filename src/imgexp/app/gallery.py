"""The gallery: a folder of images (optionally one sub-folder per class) with their cached
embeddings, its 2-D map and the thumbnails shown on it."""

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from imgexp.data import UnreadableImage, open_image
from imgexp.data.splits import SPLITS, image_files
from imgexp.errors import ImgexpError
from imgexp.features.extractor import FeatureExtractor, extract_features

THUMB_SIZE = 96


@dataclass
class Gallery:
    root: Path
    paths: list[str]  # relative to root, POSIX separators
    labels: list[str]  # class folder name, "" for images directly under root
    embeddings: np.ndarray  # (N, D), L2-normalised
    skipped: list[str] = field(default_factory=list)  # unreadable files, left out
    computed: int = 0  # embeddings computed now (the others came from the cache)

    def __len__(self) -> int:
        return len(self.paths)

    def file(self, i: int) -> Path:
        return self.root / self.paths[i]


def label_of(rel_path: str) -> str:
    """Class folder of a gallery file: root/<class>/x.jpg or root/<split>/<class>/x.jpg."""
    parts = rel_path.split("/")
    if len(parts) >= 3 and parts[0] in SPLITS:
        return parts[1]
    return parts[0] if len(parts) >= 2 else ""


def scan_gallery(root: str | Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise ImgexpError(f"gallery {root} is not a folder: set gallery=DIR (a folder of images, "
                          "optionally one sub-folder per class)")
    files = sorted(p.relative_to(root).as_posix() for p in image_files(root))
    if not files:
        raise ImgexpError(f"gallery {root} holds no image files: point gallery= at a folder "
                          "of images")
    return files


def embed_files(files: list[Path], extractor: FeatureExtractor, cache_dir: str | Path
                ) -> tuple[np.ndarray, list[int], dict]:
    """(embeddings of the readable files, their indices, extract_features' stats), through the
    select stage's on-disk cache (content hash + extractor identity)."""
    features, stats = extract_features(files, extractor, cache_dir, progress=False)
    kept = np.flatnonzero(~np.isnan(features).any(axis=1)) if len(features) else np.arange(0)
    return features[kept], kept.tolist(), stats


def load_gallery(root: str | Path, extractor: FeatureExtractor, cache_dir: str | Path
                 ) -> Gallery:
    root = Path(root)
    rel = scan_gallery(root)
    vectors, kept, stats = embed_files([root / p for p in rel], extractor, cache_dir)
    if not kept:
        raise ImgexpError(f"no image of the gallery {root} could be read (e.g. "
                          f"{stats['unreadable'][0]}): point gallery= at a folder of images")
    paths = [rel[i] for i in kept]
    return Gallery(root, paths, [label_of(p) for p in paths], vectors, stats["unreadable"],
                   stats["computed"])


def thumbnail(path: Path, size: int = THUMB_SIZE) -> Image.Image:
    """The image fitted in size x size (tiny images enlarged so they can be seen), decoded by
    the training decoder: any format shows in the browser, as PNG; grey if unreadable."""
    try:
        return ImageOps.contain(open_image(path, size=size), (size, size))
    except UnreadableImage:
        return Image.new("RGB", (size, size), (200, 200, 200))


def thumbnail_uri(path: Path, size: int = THUMB_SIZE) -> str:
    """A thumbnail as a data: URI (inline in the chart; nothing served from disk)."""
    img = thumbnail(path, size)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def pca_2d(embeddings: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    if len(embeddings) < 2:
        return np.zeros((len(embeddings), 2))
    n = min(2, embeddings.shape[1], len(embeddings))
    coords = PCA(n_components=n, random_state=0).fit_transform(embeddings)
    return np.pad(coords, ((0, 0), (0, 2 - n)))


def read_map_csv(map_csv: str | Path) -> pd.DataFrame:
    """A 2-D map written by the select or explain stage: columns path, x, y (or pc1, pc2)."""
    map_csv = Path(map_csv)
    if not map_csv.is_file():
        raise ImgexpError(f"map_csv {map_csv} not found: point it at the 2-D map CSV of a select "
                          "or explain run, or set map_csv=null for a PCA of the gallery")
    df = pd.read_csv(map_csv).rename(columns={"pc1": "x", "pc2": "y"})
    missing = [c for c in ("path", "x", "y") if c not in df.columns]
    if missing:
        raise ImgexpError(f"map_csv {map_csv} lacks column(s) {missing}: needs path, x, y")
    return df


def gallery_map(gallery: Gallery, map_csv: str | Path | None = None,
                max_points: int = 1500) -> pd.DataFrame:
    """path, label, x, y, source and a thumbnail data URI per point (at most max_points,
    an even subsample: thumbnails travel inline with the chart)."""
    if map_csv:
        df = read_map_csv(map_csv)
        df["path"] = [_relative_to(gallery.root, p) for p in df["path"]]
        df = df[df["path"].isin(set(gallery.paths))]
        if df.empty:
            raise ImgexpError(f"no path of map_csv {map_csv} is in the gallery {gallery.root}: "
                              "use the map of a run over the same images")
        df = df.assign(label=[label_of(p) for p in df["path"]], source="map_csv")
    else:
        xy = pca_2d(gallery.embeddings)
        df = pd.DataFrame({"path": gallery.paths, "label": gallery.labels,
                           "x": xy[:, 0], "y": xy[:, 1], "source": "pca"})
    if len(df) > max_points:
        df = df.iloc[np.linspace(0, len(df) - 1, max_points).round().astype(int)]
    df = df.reset_index(drop=True)
    df["image"] = [thumbnail_uri(gallery.root / p) for p in df["path"]]
    return df[["path", "label", "x", "y", "source", "image"]]


def _relative_to(root: Path, path: str) -> str:
    p = Path(path)
    try:
        return p.relative_to(root).as_posix() if p.is_absolute() else p.as_posix()
    except ValueError:
        return p.as_posix()
