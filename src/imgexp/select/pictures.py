"""What people look at instead of CSVs: cluster sizes with the share taken, a 2-D map of the
features, the k-choice curve, and one thumbnail mosaic per cluster (selected images framed,
and a sample of those left out). Each picture says what it shows: title with the counts,
legend, captions. The `*_figure` functions return the figure (what the tests look at).

matplotlib through `Figure` (not pyplot): no global backend state, works headless.
"""

import logging
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image, ImageDraw, ImageFont, ImageOps

from imgexp.atomic import atomic_path
from imgexp.data import UnreadableImage, load_rgb

log = logging.getLogger(__name__)
FRAME = (255, 140, 0)  # selected images: orange frame


def cluster_sizes_figure(sizes: np.ndarray, counts: np.ndarray) -> Figure:
    """One bar per cluster, largest first: the selected images at the bottom, the rest stacked
    on them (bar height = cluster size), "selected/size (share)" above each bar."""
    sizes, counts = np.asarray(sizes), np.asarray(counts)
    order = np.argsort(-sizes, kind="stable")
    fig = Figure(figsize=(max(6, 0.45 * len(sizes)), 4), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(sizes))
    ax.bar(x, counts[order], color="#ff8c00", label=f"selected ({counts.sum()})")
    ax.bar(x, sizes[order] - counts[order], bottom=counts[order], color="#b0c4de",
           label=f"not selected ({sizes.sum() - counts.sum()})")
    for xi, n, c in zip(x, sizes[order], counts[order], strict=True):
        ax.text(xi, n, f"{c}/{n}\n{c / max(n, 1):.0%}", ha="center", va="bottom", fontsize=6)
    ax.set(xlabel="cluster (largest first)", ylabel="images",
           title=f"{sizes.sum()} images in {len(sizes)} clusters, {counts.sum()} selected: "
                 "the bigger the cluster, the smaller the share")
    ax.title.set_fontsize(10)
    ax.set_xticks(x, [str(c) for c in order], fontsize=7)
    ax.margins(y=0.15)
    ax.legend()
    return fig


def plot_cluster_sizes(sizes: np.ndarray, counts: np.ndarray, path: Path) -> Path:
    with atomic_path(path) as tmp:
        cluster_sizes_figure(sizes, counts).savefig(tmp, dpi=120)
    return path


def cluster_colours(n: int) -> np.ndarray:
    """n distinct colours: tab20 up to 20 clusters, evenly spaced along turbo beyond."""
    return colormaps["tab20"](np.arange(n)) if n <= 20 else \
        colormaps["turbo"](np.linspace(0, 1, n))


def project_2d(space: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """UMAP when installed, else PCA."""
    try:
        import umap

        return umap.UMAP(random_state=seed).fit_transform(space), "UMAP"
    except ImportError:
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(space), "PCA"


def feature_map_figure(xy: np.ndarray, labels: np.ndarray, selected: np.ndarray, method: str,
                       keep: np.ndarray | None = None) -> Figure:
    """Points coloured by cluster, the selected ones bigger with a black edge; a legend of the
    clusters (with their sizes) and of selected vs not. labels and selected cover every image;
    xy the images `keep` (None: all) when only a sample is drawn."""
    keep = np.arange(len(labels)) if keep is None else keep
    n_clusters = int(labels.max()) + 1
    colours = cluster_colours(n_clusters)
    fig = Figure(figsize=(8 + 1.2 * (n_clusters // 25), 6), layout="constrained")
    ax = fig.add_subplot()
    lab, sel = labels[keep], selected[keep]
    ax.scatter(xy[~sel, 0], xy[~sel, 1], c=colours[lab[~sel]], s=5, alpha=0.5)
    ax.scatter(xy[sel, 0], xy[sel, 1], c=colours[lab[sel]], s=24, edgecolors="black",
               linewidths=0.6)
    sizes = np.bincount(labels, minlength=n_clusters)
    n_selected = int(selected.sum())
    handles = [Line2D([], [], ls="", marker="o", ms=4, color=colours[c],
                      label=f"cluster {c} ({sizes[c]})") for c in range(n_clusters)]
    # white, not grey: the cluster palette has its own greys, which a grey key would mimic
    handles += [Line2D([], [], ls="", marker="o", ms=7, color="white", mec="black",
                       label=f"selected ({n_selected})"),
                Line2D([], [], ls="", marker="o", ms=3, color="white", mec="dimgray", mew=0.5,
                       label=f"not selected ({len(labels) - n_selected})")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7,
               ncols=1 + n_clusters // 25, title="cluster (images)")
    shown = f" ({len(keep)} drawn)" if len(keep) < len(labels) else ""
    ax.set(title=f"{len(labels)} images{shown}, {n_selected} selected, {n_clusters} clusters: "
                 f"features in 2-D ({method})", xticks=[], yticks=[])
    ax.title.set_fontsize(10)
    return fig


def plot_feature_map(space: np.ndarray, labels: np.ndarray, selected: np.ndarray, path: Path,
                     seed: int = 0, max_points: int = 20_000) -> Path:
    """A sample of at most max_points points, projected to 2-D."""
    rng = np.random.default_rng(seed)
    keep = np.arange(len(space)) if len(space) <= max_points else np.sort(
        rng.choice(len(space), max_points, replace=False))
    xy, method = project_2d(space[keep], seed)
    with atomic_path(path) as tmp:
        feature_map_figure(xy, labels, selected, method, keep).savefig(tmp, dpi=120)
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
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


def mosaic_members(members: np.ndarray, selected: np.ndarray, ranks: np.ndarray,
                   distances: np.ndarray, per_cluster: int) -> tuple[np.ndarray, np.ndarray]:
    """What a cluster's mosaic shows: its selected images in pick order, and those left out
    spread evenly from the most typical (closest to the centroid) to the least; half the
    `per_cluster` slots each, a group with fewer images leaving its slots to the other."""
    taken = members[selected[members]]
    taken = taken[np.argsort(ranks[taken], kind="stable")]
    left = members[~selected[members]]
    left = left[np.argsort(distances[left], kind="stable")]
    n_taken = min(len(taken), max(per_cluster // 2, per_cluster - len(left)))
    n_left = min(len(left), per_cluster - n_taken)
    # n_left <= len(left): the rounded, evenly spaced positions are distinct
    spread = np.round(np.linspace(0, len(left) - 1, n_left)).astype(np.int64)
    return taken[:n_taken], left[spread]


def mosaic_caption(cluster: int, size: int, n_selected: int) -> str:
    return (f"cluster {cluster}: {size} images, {n_selected} selected "
            f"({n_selected / max(size, 1):.0%})")


def mosaic_image(caption: str, groups: list[tuple[str, list[Path], bool]], thumb: int = 64,
                 columns: int = 8) -> Image.Image:
    """A caption, then each group (heading, images, framed) on rows of its own."""
    font = ImageFont.load_default(size=12)
    cell, line = thumb + 2, 18
    rows = [-(-len(paths) // columns) for _, paths, _ in groups]
    sheet = Image.new("RGB", (columns * cell, line + sum(line + r * cell for r in rows)),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((3, 2), caption, fill=(0, 0, 0), font=font)
    y = line
    for (heading, paths, framed), n_rows in zip(groups, rows, strict=True):
        draw.text((3, y + 3), heading, fill=FRAME if framed else (70, 70, 70), font=font)
        y += line
        for k, path in enumerate(paths):
            r, c = divmod(k, columns)
            sheet.paste(_thumbnail(path, thumb, framed), (c * cell + 1, y + r * cell + 1))
        y += n_rows * cell
    return sheet


def cluster_mosaics(paths: list[Path], labels: np.ndarray, selected: np.ndarray,
                    ranks: np.ndarray, distances: np.ndarray, out_dir: Path,
                    per_cluster: int = 48) -> list[Path]:
    """One mosaic per cluster: a caption (size, selected, share), a sample of its selected
    images (framed) and of those left out, so one sees what the selection kept and dropped."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        taken, left = mosaic_members(members, selected, ranks, distances, per_cluster)
        n_taken = int(selected[members].sum())
        n_left = len(members) - n_taken
        groups = [
            (f"selected: {len(taken)} of {n_taken} shown, in pick order" if n_taken
             else "selected: none", [paths[i] for i in taken], True),
            (f"not selected: {len(left)} of {n_left} shown, most typical first" if n_left
             else "not selected: none (every image taken)", [paths[i] for i in left], False)]
        image = mosaic_image(mosaic_caption(int(c), len(members), n_taken), groups)
        with atomic_path(out_dir / f"cluster_{int(c):03d}.jpg") as tmp:
            image.save(tmp, quality=88)
        written.append(out_dir / f"cluster_{int(c):03d}.jpg")
    return written
