"""What people look at instead of CSVs: cluster sizes with the share taken, a 2-D map of the
features, the k-choice curve, and one thumbnail mosaic per cluster (selected images framed).

matplotlib through `Figure` (not pyplot): no global backend state, works headless.
"""

import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageOps

from imgexp.data import UnreadableImage, load_rgb

log = logging.getLogger(__name__)
FRAME = (255, 140, 0)  # selected images: orange frame


def plot_cluster_sizes(sizes: np.ndarray, counts: np.ndarray, path: Path) -> Path:
    fig = Figure(figsize=(max(6, 0.35 * len(sizes)), 4), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(sizes))
    ax.bar(x, sizes, color="#b0c4de", label="images in cluster")
    ax.bar(x, counts, color="#ff8c00", label="selected")
    for xi, n, c in zip(x, sizes, counts, strict=True):
        ax.text(xi, n, f"{c / n:.0%}", ha="center", va="bottom", fontsize=7)
    ax.set(xlabel="cluster", ylabel="images", title="Cluster sizes and share selected")
    ax.set_xticks(x)
    ax.legend()
    fig.savefig(path, dpi=120)
    return path


def plot_feature_map(space: np.ndarray, labels: np.ndarray, selected: np.ndarray, path: Path,
                     seed: int = 0, max_points: int = 20_000) -> Path:
    """PCA to 2-D (UMAP when installed), a sample of at most max_points points."""
    rng = np.random.default_rng(seed)
    keep = np.arange(len(space)) if len(space) <= max_points else np.sort(
        rng.choice(len(space), max_points, replace=False))
    x = space[keep]
    try:
        import umap

        xy, method = umap.UMAP(random_state=seed).fit_transform(x), "UMAP"
    except ImportError:
        from sklearn.decomposition import PCA

        xy, method = PCA(2, random_state=seed).fit_transform(x), "PCA"
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(xy[:, 0], xy[:, 1], c=labels[keep], cmap="tab20", s=6, alpha=0.6)
    sel = selected[keep]
    ax.scatter(xy[sel, 0], xy[sel, 1], facecolors="none", edgecolors="black", s=22,
               linewidths=0.6, label="selected")
    ax.set(title=f"Features ({method}), coloured by cluster", xticks=[], yticks=[])
    ax.legend(loc="best")
    fig.savefig(path, dpi=120)
    return path


def plot_k_choice(table: list[dict], path: Path) -> Path:
    ks = [row["k"] for row in table]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(ks, [row["silhouette"] for row in table], "o-", color="tab:blue")
    ax.set(xlabel="k", ylabel="silhouette (higher is better)", title="Choosing the number of clusters")
    twin = ax.twinx()
    twin.plot(ks, [row["inertia"] for row in table], "s--", color="tab:gray")
    twin.set_ylabel("inertia (elbow)")
    best = max(table, key=lambda row: row["silhouette"])["k"]
    ax.axvline(best, color="tab:orange", linestyle=":")
    fig.savefig(path, dpi=120)
    return path


def _thumbnail(path: Path, size: int, framed: bool) -> Image.Image:
    try:
        img = Image.fromarray(load_rgb(path, size))
    except UnreadableImage:
        return Image.new("RGB", (size, size), (128, 128, 128))
    if framed:
        inner = img.resize((size - 8, size - 8))
        return ImageOps.expand(inner, border=4, fill=FRAME)
    return img


def cluster_mosaic(paths: list[Path], framed: list[bool], out: Path, thumb: int = 64,
                   columns: int = 8) -> Path:
    rows = max(1, -(-len(paths) // columns))
    sheet = Image.new("RGB", (columns * (thumb + 2), rows * (thumb + 2)), (255, 255, 255))
    for k, (path, frame) in enumerate(zip(paths, framed, strict=True)):
        r, c = divmod(k, columns)
        sheet.paste(_thumbnail(path, thumb, frame), (c * (thumb + 2) + 1, r * (thumb + 2) + 1))
    sheet.save(out, quality=88)
    return out


def cluster_mosaics(paths: list[Path], labels: np.ndarray, selected: np.ndarray,
                    distances: np.ndarray, out_dir: Path, per_cluster: int = 48) -> list[Path]:
    """One mosaic per cluster: its selected images first (framed), then the closest others."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.lexsort((distances[members], ~selected[members]))][:per_cluster]
        written.append(cluster_mosaic([paths[i] for i in members], list(selected[members]),
                                      out_dir / f"cluster_{int(c):03d}.jpg"))
    return written
