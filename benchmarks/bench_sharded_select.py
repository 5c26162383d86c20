"""sharded_select: imgexp-select's extraction split in 2 shard processes (each its half of
the images, one shared feature cache) vs 1 process over all of them, images/s ratio on this
machine; and what runs after the shards, from 200k to 1M vectors: the clustering step
(mini-batch k-means + the assignment pass; goal: memory bounded by its chunks, not growing
like N x D) and the k-center selection (select=large), each with its time and extra memory.
"""

import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks.bench_clustering import LARGE, K, select_from, synthetic
from benchmarks.common import real_photos_or_digits
from imgexp.select.clustering import cluster_features
from imgexp.select.shards import shard_indices

BACKBONE = {"_target_": "imgexp.models.backbones.TimmBackbone", "name": "resnet18"}
SIZE, BATCH = 112, 32


def _extract(paths: list[Path], cache: str, threads: int) -> None:
    import torch

    from imgexp.features.extractor import FeatureExtractor, extract_features

    torch.set_num_threads(threads)
    extractor = FeatureExtractor.from_backbone(BACKBONE, image_size=SIZE, precision="fp32")
    extract_features(paths, extractor, cache, batch_size=BATCH, progress=False, compact=False)


def extraction_seconds(paths: list[Path], shards: int) -> float:
    """Wall time of `shards` processes started together, each on its slice, fresh cache;
    the machine's cores are divided among them (one process gets them all)."""
    cache = tempfile.mkdtemp(prefix="bench_shards_cache_")
    threads = max(1, (os.cpu_count() or 1) // shards)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_extract, args=([paths[i] for i in shard_indices(
        len(paths), s, shards)], cache, threads)) for s in range(shards)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"shard process failed with exit code {p.exitcode}")
    return time.perf_counter() - start


def _clustering_child(n: int, dim: int, queue) -> None:
    """In a fresh process: the clustering step (mini-batch k-means + the assignment pass), then
    the selection (select=large: k-center in blocks), each timed, with its peak traced numpy
    memory and how much it raised the process's resident high-water mark (ru_maxrss)."""
    def rss_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    x = synthetic(n, dim)
    out = {"features MiB": x.nbytes / 2**20}
    steps = (("clustering", lambda: cluster_features(x, K, seed=0, show_progress=False)),
             ("selection", lambda: select_from(clusters, LARGE)))
    for name, step in steps:
        before = rss_mib()
        tracemalloc.start()
        start = time.perf_counter()
        result = step()
        out[f"{name} s"] = time.perf_counter() - start
        out[f"{name} traced MiB"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        out[f"{name} rss MiB"] = rss_mib() - before
        if name == "clustering":
            clusters = result
    queue.put(out)


def clustering_figures(sizes: tuple[int, ...], dim: int = 128) -> dict:
    """One fresh process per size (a peak is per process); dim 128 is select=large's PCA."""
    ctx = mp.get_context("spawn")
    out = {"clustering": f"synthetic float32 x {dim} dims (select=large's PCA size), k={K}, "
                         "one run each in its own process; 'extra': the step's peak traced "
                         "numpy memory (tracemalloc) / rise of the process's ru_maxrss, "
                         "beyond the features it is given"}
    for n in sizes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_clustering_child, args=(n, dim, queue))
        proc.start()
        r = queue.get()
        proc.join()
        out[f"{n} ({r['features MiB']:.0f} MiB of features): clustering s, extra MiB"] = \
            f"{r['clustering s']:.1f} s, {r['clustering traced MiB']:.0f} / {r['clustering rss MiB']:.0f}"
        out[f"{n}: k-center selection s, extra MiB"] = \
            f"{r['selection s']:.1f} s, {r['selection traced MiB']:.0f} / {r['selection rss MiB']:.0f}"
    return out


def run(quick: bool = False) -> dict:
    root, source = real_photos_or_digits()
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    paths = paths[:128] if quick else paths[:1024]
    out = {"extraction": f"{len(paths)} images of {source}, {BACKBONE['name']} at {SIZE} px, "
                         f"batch {BATCH}, {os.cpu_count()} cores shared by the processes "
                         "(each process includes its start-up)"}
    one = extraction_seconds(paths, 1)
    two = extraction_seconds(paths, 2)
    out["1 process: images/s"] = round(len(paths) / one, 1)
    out["2 shards: images/s"] = round(len(paths) / two, 1)
    out["2 shards / 1 process throughput"] = round(one / two, 2)
    out.update(clustering_figures((20_000, 50_000) if quick else (200_000, 500_000, 1_000_000)))
    return out


if __name__ == "__main__":
    # --clustering: the clustering figures alone (no extraction)
    figures = clustering_figures((200_000, 500_000, 1_000_000)) if "--clustering" in sys.argv \
        else run(quick=False)
    for key, value in figures.items():
        print(f"{key}: {value}")
