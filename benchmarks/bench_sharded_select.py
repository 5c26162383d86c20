"""sharded_select: imgexp-select's extraction split in 2 shard processes (each its half of
the images, one shared feature cache) vs 1 process over all of them, images/s ratio on this
machine; and the clustering step alone (mini-batch k-means + selection, what runs after the
shards) from 200k to 1M vectors: its time, and its peak memory beyond the feature matrix it
is given (goal: bounded by its batches, not growing like N x D).
"""

import multiprocessing as mp
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks.bench_clustering import cluster_and_select, synthetic
from benchmarks.common import real_photos_or_digits
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


def clustering_figures(n: int, dim: int) -> tuple[float, float, float]:
    """-> seconds, peak traced MiB beyond the input, input MiB."""
    x = synthetic(n, dim)
    tracemalloc.start()
    start = time.perf_counter()
    cluster_and_select(x)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, x.nbytes / 2**20


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
    dim = 128  # select=large: PCA to 128 before mini-batch k-means
    sizes = (20_000, 50_000) if quick else (200_000, 500_000, 1_000_000)
    out["clustering"] = (f"synthetic float32 x {dim} dims (select=large's PCA size), k=20, "
                         "mini-batch k-means + k-center selection, one run each")
    for n in sizes:
        seconds, peak, data = clustering_figures(n, dim)
        out[f"{n}: cluster+select s"] = round(seconds, 1)
        out[f"{n}: peak MiB beyond the {data:.0f} MiB of features"] = round(peak)
    return out


if __name__ == "__main__":
    for key, value in run(quick=False).items():
        print(f"{key}: {value}")
