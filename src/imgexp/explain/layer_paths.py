"""Each image's path through the layers (its cluster at every depth) and how typical it is.

A path is typical of a predicted class when, layer after layer, it goes through the clusters
that the other images predicted as that class go through. Paths that wander through clusters
owned by other classes are the seed's "doubtful" classifications.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from imgexp.atomic import atomic_path


def short_names(layers: list[str]) -> list[str]:
    """Axis titles: the layer names without the common 'backbone.' / 'backbone.model.' prefix."""
    return [name.removeprefix("backbone.model.").removeprefix("backbone.") for name in layers]


def path_table(table: pd.DataFrame, clusters: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per image: cluster per layer, typicality and layers whose cluster belongs to another class.

    typicality = mean over layers of the share of same-predicted-class images in the same
    cluster (1: every image predicted as this class goes this way; near 0: an odd path).
    A cluster "belongs" to the true class most of its members have.
    """
    out = table[["path", "true", "predicted", "confidence", "correct"]].copy()
    shares, foreign = np.zeros(len(out)), np.zeros(len(out), dtype=int)
    predicted = out["predicted"].to_numpy()
    true = out["true"].to_numpy()
    for layer, ids in clusters.items():
        out[layer] = ids
        frame = pd.DataFrame({"pred": predicted, "true": true, "cluster": ids})
        share = frame.groupby(["pred", "cluster"]).size() / frame.groupby("pred").size()
        shares += share.loc[list(zip(predicted, ids, strict=True))].to_numpy()
        owner = frame.groupby("cluster")["true"].agg(lambda s: s.value_counts().index[0])
        foreign += owner.loc[ids].to_numpy() != predicted
    out["typicality"] = np.round(shares / max(1, len(clusters)), 4)
    out["foreign_layers"] = foreign
    return out


def least_typical(paths: pd.DataFrame, per_class: int) -> pd.DataFrame:
    """The `per_class` least typical images of each predicted class, least typical first."""
    ranked = paths.sort_values(["typicality", "confidence"], kind="stable")
    return (ranked.groupby("predicted", sort=False).head(per_class)
            .sort_values("typicality", kind="stable").reset_index(drop=True))


def plot_parallel(paths: pd.DataFrame, layers: list[str], class_names: list[str],
                  path: Path, plotly_src: str) -> None:
    """Parallel categories: true class, one axis per layer (cluster id), predicted class.

    Ribbons are coloured by true class, so a class splitting into several clusters, or
    clusters mixing classes, shows at a glance.
    """
    order = {name: i for i, name in enumerate(class_names)}
    color = paths["true"].map(order).fillna(-1).to_numpy()
    dims = [go.parcats.Dimension(values=paths["true"], label="true class")]
    dims += [go.parcats.Dimension(values=paths[layer].astype(str), label=f"{short} cluster")
             for layer, short in zip(layers, short_names(layers), strict=True)]
    dims += [go.parcats.Dimension(values=paths["predicted"], label="predicted class")]
    fig = go.Figure(go.Parcats(dimensions=dims, hoveron="color", arrangement="freeform",
                               line=dict(color=color, colorscale="Turbo", shape="hspline")))
    fig.update_layout(title="Cluster path of each image through the layers",
                      height=600, margin=dict(l=80, r=80))
    with atomic_path(path) as tmp:
        fig.write_html(tmp, include_plotlyjs=plotly_src, full_html=True)
