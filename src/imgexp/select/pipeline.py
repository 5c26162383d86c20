"""The select stage: images -> features -> clusters -> per-cluster choice -> files and pictures."""

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from imgexp.atomic import write_json_atomic
from imgexp.data.splits import Sample, image_files, is_candidate_image
from imgexp.errors import ImgexpError
from imgexp.features.extractor import FeatureExtractor, extract_features
from imgexp.select.clustering import Clusters, cluster_features, fit_pca, project
from imgexp.select.export import export_selection
from imgexp.select.outputs import write_outputs
from imgexp.select.selection import (
    check_within,
    cluster_counts,
    cluster_shares,
    select,
    solve_budget,
)
from imgexp.select.shards import shard_indices, shard_of
from imgexp.select.similarity import redundancy_score, similarity_score

log = logging.getLogger(__name__)


def _is_flat(root: Path) -> bool:
    """A folder holding the images themselves (no class sub-folders): nothing labelled yet."""
    return root.is_dir() and any(p.is_file() and is_candidate_image(p) for p in root.iterdir())


def list_images(data_cfg: DictConfig) -> tuple[Path, list[Sample]]:
    """Labelled data through the data module (class folders, manifest, built-in); an unlabelled
    flat folder is read as it is (label and split empty)."""
    if not data_cfg.get("manifest") and data_cfg.get("root") and not data_cfg.get("builtin"):
        root = Path(data_cfg.root)
        if _is_flat(root):
            files = sorted(p.relative_to(root).as_posix() for p in image_files(root))
            return root, [Sample(f, "", "") for f in files]
        if root.is_dir() and not any(p.is_file() for p in root.rglob("*")):  # stops at one
            # the data module would ask for class folders, which select does not need
            raise ImgexpError(f"no images under data.root={root}: put the images there, as they "
                              "are or in one sub-folder per class")
    datamodule = instantiate(data_cfg, _recursive_=False)
    datamodule.resolve()
    return Path(datamodule.root), list(datamodule.samples)


def build_extractor(cfg: DictConfig) -> FeatureExtractor:
    s = cfg.select
    kwargs = dict(device=s.device, precision=s.precision, channels_last=cfg.model.channels_last)
    if s.ckpt_path:
        return FeatureExtractor.from_checkpoint(s.ckpt_path, mode=s.ckpt_features, **kwargs)
    # resolved here: a backbone config may point into the rest (simple_cnn's ${data.image_size})
    backbone = OmegaConf.to_container(cfg.model.backbone, resolve=True)
    return FeatureExtractor.from_backbone(backbone, image_size=cfg.data.image_size,
                                          mean=cfg.model.mean, std=cfg.model.std, seed=cfg.seed,
                                          **kwargs)


def choose_counts(sizes: np.ndarray, s: DictConfig) -> np.ndarray:
    if s.budget:
        return solve_budget(sizes, int(s.budget), s.p_min, s.p_max, s.growth, s.min_per_cluster)
    return cluster_counts(sizes, cluster_shares(sizes, s.p_min, s.p_max, s.growth),
                          s.min_per_cluster)


def selection_transform(clusters: Clusters, dim: int | None, seed: int
                        ) -> Callable[[np.ndarray], np.ndarray] | None:
    """k-center distances in at most `dim` dimensions (its cost is picks x cluster size x D):
    a PCA fitted on a sample of the whole space, which select() applies to one cluster's rows
    at a time (no projected copy of all N points); None: the space as it is."""
    space = clusters.space
    if not (dim and space.shape[1] > dim and len(space) > dim):
        return None
    return partial(project, fit_pca(space, dim, seed), space)


def pick(clusters: Clusters, counts: np.ndarray, s: DictConfig, seed: int
         ) -> tuple[np.ndarray, np.ndarray]:
    """select() with the stage's settings: k-center in select.kcenter_dim dimensions."""
    return select(clusters.space, clusters.labels, clusters.distances, counts, s.within, seed,
                  s.kcenter_block, selection_transform(
                      clusters, s.kcenter_dim if s.within == "kcenter" else None, seed))


def extract_shard(cfg: DictConfig, extractor: FeatureExtractor, paths: list[Path],
                  shard: int, num_shards: int) -> dict:
    """One shard's features into the cache, its figures to RUN/shard.json; no clustering."""
    s = cfg.select
    _, stats = extract_features(paths, extractor, cache_dir=s.cache_dir, recompute=s.recompute,
                                batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                                chunk_size=s.chunk_size, progress=s.progress, compact=False)
    summary = {"shard": shard, "num_shards": num_shards, "features": stats}
    write_json_atomic(Path(cfg.paths.output_dir) / "shard.json", summary)
    return summary


def run_select(cfg: DictConfig) -> dict:
    start = time.perf_counter()
    s = cfg.select
    check_within(s.within)  # before the features: a typo must not cost an extraction
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    root, samples = list_images(cfg.data)
    others = []  # images of the splits not selected from: kept as they are in the manifest
    if s.from_splits:
        others = [x for x in samples if x.split not in set(s.from_splits)]
        samples = [x for x in samples if x.split in set(s.from_splits)]
    if len(samples) < 2:
        raise ImgexpError(f"only {len(samples)} image(s) to select from under {root}"
                          + (f" in splits {list(s.from_splits)}" if s.from_splits else ""))

    extractor = build_extractor(cfg)
    shard = shard_of(s)
    if shard:
        return extract_shard(cfg, extractor, [root / samples[i].path for i in
                                              shard_indices(len(samples), *shard,
                                                            align=cfg.data.batch_size)], *shard)
    features, stats = extract_features(
        [root / x.path for x in samples], extractor, cache_dir=s.cache_dir,
        recompute=s.recompute, batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers, chunk_size=s.chunk_size, export_csv=s.export_csv,
        progress=s.progress)
    unreadable = set(stats["unreadable"])
    readable = np.array([str(root / x.path) not in unreadable for x in samples])
    if readable.sum() < 2:
        raise ImgexpError(f"only {readable.sum()} of {len(samples)} images under {root} could "
                          "be decoded: check the files (imgexp-prepare lists the reasons)")
    samples = [x for x, ok in zip(samples, readable, strict=True) if ok]
    features = features[readable]
    log.info("features: %d computed, %d cached, %d unreadable, dim %d", stats["computed"],
             stats["cached"], len(stats["unreadable"]), stats["dim"])

    n_clusters = s.n_clusters if s.n_clusters == "auto" else int(s.n_clusters)
    clusters = cluster_features(features, n_clusters, s.method, s.minibatch_above, s.pca_dim,
                                list(s.auto_k) if s.auto_k else None, cfg.seed, s.progress)
    sizes = np.bincount(clusters.labels, minlength=len(clusters.centroids))
    counts = choose_counts(sizes, s)
    chosen, ranks = pick(clusters, counts, s, cfg.seed)

    center = features.mean(0)  # one origin for both sets, so their scores compare
    similarity = {}
    sample = min(s.redundancy_sample, len(chosen))
    for name, feats in (("all", features), ("selected", features[chosen])):
        similarity[f"similarity_{name}"] = similarity_score(
            feats, center, s.n_experiments, s.pairs_per_experiment, cfg.seed)
        similarity[f"redundancy_{name}"] = redundancy_score(
            feats, center, sample, s.n_experiments, cfg.seed)
    exported = export_selection(root, [samples[i].path for i in chosen], s.export, s.export_dir,
                                s.progress)
    summary = write_outputs(
        run_dir, cfg, root, samples, others, features, clusters, counts, chosen, ranks,
        feature_stats=stats, similarity=similarity, exported=exported,
        wall_time_s=time.perf_counter() - start)
    return summary
