"""Feature extraction split over processes or machines: shard i of N embeds its slice of the
images into the shared, content-keyed feature cache, and one later run without a shard
clusters them, reading every feature from that cache.

Concurrent shards only add files to the cache (each chunk is written to a temporary name and
renamed into place under a unique name); they never compact it, which would drop the chunks
of the other shards: the clustering run, which knows every image, compacts.
"""

import os

import numpy as np
from omegaconf import DictConfig

from imgexp.errors import ImgexpError


def shard_of(s: DictConfig, environ=os.environ) -> tuple[int, int] | None:
    """(shard, num_shards) from select.shard/num_shards, else a SLURM job array's task;
    None for a run over every image (the clustering step)."""
    shard, num = s.get("shard"), s.get("num_shards")
    if shard is None and num is None and "SLURM_ARRAY_TASK_COUNT" in environ:
        num = int(environ["SLURM_ARRAY_TASK_COUNT"])
        shard = int(environ["SLURM_ARRAY_TASK_ID"]) - int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
    if shard is None and num is None:
        return None
    if shard is None or num is None or not 0 <= int(shard) < int(num):
        raise ImgexpError(f"select.shard={shard} select.num_shards={num}: give both, with "
                          "0 <= shard < num_shards (e.g. select.shard=0 select.num_shards=4)")
    if s.get("cache_dir") is None:
        raise ImgexpError("select.shard needs select.cache_dir: the shards meet in that cache")
    if s.get("recompute"):
        raise ImgexpError("select.recompute=true with select.shard: each shard would delete "
                          "the features the others wrote; delete select.cache_dir's folder "
                          "once instead, then start the shards")
    return int(shard), int(num)


def shard_indices(n: int, shard: int, num_shards: int, align: int = 1) -> np.ndarray:
    """Contiguous slices (images of one folder stay together: fewer cache chunks) starting at
    multiples of `align`, the batch size: each shard's batches are the very batches one
    process would form, so the features are the same bits whatever the kernels do per batch."""
    bounds = [min(n, round(n * i / num_shards / align) * align) for i in range(num_shards + 1)]
    bounds[-1] = n
    return np.arange(bounds[shard], bounds[shard + 1])
