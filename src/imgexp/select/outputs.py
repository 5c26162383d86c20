"""The select stage's run directory: CSVs, a manifest to train on, summary.json, pictures."""

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from imgexp.atomic import write_frame_atomic, write_json_atomic
from imgexp.data.splits import Sample
from imgexp.select.clustering import Clusters
from imgexp.select.pictures import (
    cluster_mosaics,
    plot_cluster_sizes,
    plot_feature_map,
    plot_k_choice,
)
from imgexp.select.selection import budget_scale, relative_sizes
from imgexp.select.share_plot import plot_share_curve
from imgexp.tracking.run_files import write_run_info

log = logging.getLogger(__name__)




def cluster_table(samples: list[Sample], clusters: Clusters, chosen: np.ndarray,
                  ranks: np.ndarray) -> pd.DataFrame:
    rank = np.full(len(samples), -1)
    rank[chosen] = ranks
    return pd.DataFrame({
        "path": [x.path for x in samples], "label": [x.label for x in samples],
        "split": [x.split for x in samples], "cluster": clusters.labels,
        "distance": np.round(clusters.distances, 6), "selected": rank >= 0, "rank": rank})


def write_manifest(run_dir: Path, root: Path, selected: pd.DataFrame, others: list[Sample],
                   all_labels: set[str], seed: int) -> Path | None:
    """selection_manifest.csv: the selected images plus the untouched images of the splits not
    selected from, ready for `imgexp-train data=manifest data.manifest=...`."""
    if (selected["label"] == "").any() or (selected["split"] == "").any():
        return None  # unlabelled images: nothing to train on yet
    rows = selected[["path", "label", "split"]]
    rows = pd.concat([rows, pd.DataFrame([(x.path, x.label, x.split) for x in others],
                                         columns=["path", "label", "split"])])
    path = write_frame_atomic(rows, run_dir / "selection_manifest.csv")
    # every class of the data, selected or not, in the data module's order for class folders
    classes = sorted(set(rows["label"]) | set(all_labels))
    write_json_atomic(path.with_suffix(".json"),
                      {"root": str(root.resolve()), "classes": classes, "seed": seed,
                       "source": "imgexp-select"})
    return path


def per_cluster(clusters: Clusters, sizes: np.ndarray, counts: np.ndarray,
                table: pd.DataFrame) -> list[dict]:
    info = clusters.info
    relative = relative_sizes(sizes)
    out = []
    for c, (n, k) in enumerate(zip(sizes, counts, strict=True)):
        labels = Counter(table.loc[table["cluster"] == c, "label"])
        out.append({"cluster": c, "size": int(n), "selected": int(k),
                    "share": round(float(k / n), 4) if n else 0.0,
                    "relative_size": round(float(relative[c]), 4),
                    "spread": info["spread"][c],
                    "nearest_centroid_distance": info["nearest_centroid_distance"][c],
                    "labels": {lab: cnt for lab, cnt in labels.most_common() if lab}})
    return out


def write_pictures(run_dir: Path, root: Path, table: pd.DataFrame, clusters: Clusters,
                   sizes: np.ndarray, counts: np.ndarray, cfg: DictConfig) -> list[str]:
    pics = run_dir / "pictures"
    pics.mkdir(exist_ok=True)
    selected = table["selected"].to_numpy()
    s = cfg.select
    scale = budget_scale(sizes, int(s.budget), s.p_min, s.p_max, s.growth, s.min_per_cluster) \
        if s.budget else None
    made = [plot_cluster_sizes(sizes, counts, pics / "cluster_sizes.png"),
            plot_share_curve(pics / "share_curve.png", s.p_min, s.p_max, s.growth, sizes,
                             counts, scale),
            plot_feature_map(clusters.space, clusters.labels, selected, pics / "feature_map.png",
                             cfg.seed)]
    if "k_table" in clusters.info:
        made.append(plot_k_choice(clusters.info["k_table"], pics / "k_choice.png"))
    made += cluster_mosaics([root / p for p in table["path"]], clusters.labels, selected,
                            table["rank"].to_numpy(), clusters.distances, pics / "clusters",
                            s.mosaic_size)
    return [str(p.relative_to(run_dir)) for p in made]


def write_outputs(run_dir: Path, cfg: DictConfig, root: Path, samples: list[Sample],
                  others: list[Sample], features: np.ndarray, clusters: Clusters,
                  counts: np.ndarray, chosen: np.ndarray, ranks: np.ndarray, *,
                  feature_stats: dict, similarity: dict, exported: dict,
                  wall_time_s: float) -> dict:
    s = cfg.select
    sizes = np.bincount(clusters.labels, minlength=len(clusters.centroids))
    table = cluster_table(samples, clusters, chosen, ranks)
    write_frame_atomic(table.drop(columns=["selected", "rank"]), run_dir / "clusters.csv")
    selected = table[table["selected"]].drop(columns=["selected"])
    write_frame_atomic(selected, run_dir / "selection.csv")
    manifest = write_manifest(run_dir, root, selected, others, set(table["label"]), cfg.seed)
    if s.export_csv:  # the seed's clustered_features_all.csv
        feats = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
        write_frame_atomic(pd.concat([table[["path", "label", "cluster"]], feats], axis=1),
                         run_dir / "clustered_features_all.csv")
    pictures = write_pictures(run_dir, root, table, clusters, sizes, counts, cfg) \
        if s.pictures else []
    k_table = clusters.info.get("k_table")
    summary = {
        "root": str(root), "n_images": len(samples), "n_selected": int(len(chosen)),
        "selected_fraction": round(len(chosen) / len(samples), 4),
        "unreadable": feature_stats["unreadable"],
        "features": {k: feature_stats[k] for k in ("computed", "cached", "seconds", "dim",
                                                   "precision", "identity")},
        "clustering": {k: v for k, v in clusters.info.items()
                       if k not in ("spread", "nearest_centroid_distance", "k_table")},
        "k_table": k_table, "clusters": per_cluster(clusters, sizes, counts, table),
        "labels_all": dict(Counter(x.label for x in samples if x.label)),
        "labels_selected": dict(Counter(selected["label"][selected["label"] != ""])),
        **similarity, "export": exported, "pictures": pictures,
        "manifest": str(manifest) if manifest else None,
        "params": OmegaConf.to_container(s, resolve=True)}
    write_json_atomic(run_dir / "summary.json", summary)
    listing = table[["path", "label", "split"]].to_csv(index=False).encode()
    write_run_info(run_dir, cfg.seed, hashlib.sha256(listing).hexdigest(), wall_time_s)
    log.info("summary: %s", json.dumps({k: summary[k] for k in ("n_images", "n_selected")}))
    return summary
