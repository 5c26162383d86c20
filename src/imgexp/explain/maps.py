"""2-D PCA map of each layer: points coloured by true class, cluster centres, misclassified
images ringed, out-of-distribution images (if any) as grey triangles. PNG and plotly HTML."""

from pathlib import Path

import matplotlib
import numpy as np
import plotly.graph_objects as go
from sklearn.decomposition import PCA

from imgexp.atomic import atomic_path
from imgexp.explain.clustering import LayerClusters

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def project(result: LayerClusters, activations: np.ndarray, ood: np.ndarray | None, seed: int
            ) -> dict[str, np.ndarray]:
    """PCA fitted on the explained images; centres and OOD images projected into it."""
    x = result.scaler.transform(activations)
    pca = PCA(n_components=2, random_state=seed).fit(x)
    out = {"points": pca.transform(x), "centers": pca.transform(result.centers),
           "explained": pca.explained_variance_ratio_}
    if ood is not None and len(ood):
        out["ood"] = pca.transform(result.scaler.transform(ood))
    return out


def _palette(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def plot_png(xy: dict, table, class_names: list[str], title: str, path: Path) -> None:
    colors = _palette(len(class_names))
    wrong = ~table["correct"].to_numpy()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for i, name in enumerate(class_names):
        mask = (table["true"] == name).to_numpy()
        if mask.any():
            ax.scatter(*xy["points"][mask].T, s=14, color=colors[i], label=name, alpha=0.75)
    ax.scatter(*xy["points"][wrong].T, s=60, facecolors="none", edgecolors="red",
               linewidths=1.2, label="misclassified")
    if "ood" in xy:
        ax.scatter(*xy["ood"].T, s=30, marker="^", color="dimgrey", label="unseen class (OOD)")
    ax.scatter(*xy["centers"].T, s=140, marker="X", color="black", label="cluster centre")
    var = xy["explained"]
    ax.set_xlabel(f"PC1 ({var[0]:.0%})")
    ax.set_ylabel(f"PC2 ({var[1]:.0%})" if len(var) > 1 else "PC2")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best", markerscale=0.8, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def _hover(table) -> list[str]:
    return [f"{p}<br>true: {t} · predicted: {q} ({c:.2f})<br>cluster {k}"
            for p, t, q, c, k in zip(table["path"], table["true"], table["predicted"],
                                     table["confidence"], table["cluster"], strict=True)]


def plot_html(xy: dict, table, ood_table, class_names: list[str], title: str, path: Path,
              plotly_src: str) -> None:
    """Interactive map; plotly.js is referenced at `plotly_src` (one shared local copy)."""
    fig = go.Figure()
    hover = np.array(_hover(table))
    for name in class_names:
        mask = (table["true"] == name).to_numpy()
        if mask.any():
            fig.add_scatter(x=xy["points"][mask, 0], y=xy["points"][mask, 1], mode="markers",
                            name=name, text=hover[mask], hoverinfo="text")
    wrong = ~table["correct"].to_numpy()
    fig.add_scatter(x=xy["points"][wrong, 0], y=xy["points"][wrong, 1], mode="markers",
                    name="misclassified", text=hover[wrong], hoverinfo="text",
                    marker=dict(size=13, color="rgba(0,0,0,0)", line=dict(color="red", width=2)))
    if "ood" in xy:
        text = [f"{p}<br>unseen class · predicted: {q} ({c:.2f})" for p, q, c in
                zip(ood_table["path"], ood_table["predicted"], ood_table["confidence"],
                    strict=True)]
        fig.add_scatter(x=xy["ood"][:, 0], y=xy["ood"][:, 1], mode="markers", text=text,
                        hoverinfo="text", name="unseen class (OOD)",
                        marker=dict(symbol="triangle-up", size=9, color="dimgrey"))
    fig.add_scatter(x=xy["centers"][:, 0], y=xy["centers"][:, 1], mode="markers+text",
                    name="cluster centres", text=[str(i) for i in range(len(xy["centers"]))],
                    textposition="top center",
                    marker=dict(symbol="x", size=14, color="black"))
    fig.update_layout(title=title, xaxis_title="PC1", yaxis_title="PC2", template="plotly_white")
    with atomic_path(path) as tmp:
        fig.write_html(tmp, include_plotlyjs=plotly_src, full_html=True)
