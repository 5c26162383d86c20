"""Sharded extraction: shard processes fill one feature cache, a later run clusters from it."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from helpers.config import compose_config
from imgexp.errors import ImgexpError
from imgexp.features.cache import FolderCache
from imgexp.select.pipeline import run_select
from imgexp.select.shards import shard_indices, shard_of


def select_args(data_dir, ckpt, cache):
    # chunk_size 64: > 16 chunks per folder, so the clustering run compacts what both wrote
    return ["data=digits", f"paths.data_dir={data_dir}", f"select.ckpt_path={ckpt}",
            f"select.cache_dir={cache}", "select.n_experiments=5", "select.pictures=false",
            "select.chunk_size=64", "select.progress=false", "select.budget=300"]


def cache_table(cache_dir) -> dict:
    table = {}
    for folder in sorted(p for p in cache_dir.glob("*/*") if p.is_dir()):
        cache = FolderCache.__new__(FolderCache)
        cache.dir = folder
        table.update(cache.load())
    return table


@pytest.mark.slow
def test_two_shards_then_clustering_equal_one_process(tmp_path, data_dir, digits_ckpt):
    shared, alone = tmp_path / "shared_cache", tmp_path / "alone_cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    shards = [subprocess.Popen([sys.executable, "-m", "imgexp.select",
                                *select_args(data_dir, digits_ckpt, shared),
                                f"select.shard={i}", "select.num_shards=2",
                                f"hydra.run.dir={tmp_path / f'shard{i}'}"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for i in range(2)]  # at the same time: concurrent writers of the same folders
    for proc in shards:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        assert "shard" in out and not (tmp_path / "shard0" / "selection.csv").exists()
    parts = cache_table(shared)
    assert len(parts) > 1700  # distinct contents: the digits hold a few identical images

    cluster = run_select(compose_config("select", select_args(data_dir, digits_ckpt, shared),
                                        tmp_path / "cluster"))
    assert cluster["features"]["computed"] == 0 and cluster["features"]["cached"] == 1797
    # one process with the shards' thread setting: kernels may sum in another order with
    # another number of threads, which changes the last bits
    proc = subprocess.run([sys.executable, "-m", "imgexp.select",
                           *select_args(data_dir, digits_ckpt, alone),
                           f"hydra.run.dir={tmp_path / 'one'}"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1797 computed" in proc.stdout
    whole = cache_table(alone)
    assert whole.keys() == parts.keys()
    assert all(np.array_equal(whole[h], parts[h]) for h in whole)  # bit-identical
    assert cache_table(shared).keys() == parts.keys()  # compaction kept both shards' rows
    picked = [pd.read_csv(tmp_path / run / "selection.csv") for run in ("cluster", "one")]
    pd.testing.assert_frame_equal(picked[0], picked[1])


def cfg(**select):
    return OmegaConf.create({"cache_dir": "/cache", "shard": None, "num_shards": None,
                             "recompute": False, **select})


def test_shard_from_options_or_slurm_array():
    assert shard_of(cfg()) is None
    assert shard_of(cfg(shard=1, num_shards=3)) == (1, 3)
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert shard_of(cfg(), slurm) == (1, 4)
    assert shard_of(cfg(shard=0, num_shards=2), slurm) == (0, 2)  # the options win


@pytest.mark.parametrize("select", [{"shard": 2, "num_shards": 2}, {"shard": 0},
                                    {"shard": 0, "num_shards": 2, "cache_dir": None},
                                    {"shard": 0, "num_shards": 2, "recompute": True}])
def test_bad_shard_options_are_one_line(select):
    with pytest.raises(ImgexpError, match="select.shard"):
        shard_of(cfg(**select))


@pytest.mark.parametrize("n", [10, 1797, 3])
def test_shards_cover_every_image_once_in_whole_batches(n):
    parts = [shard_indices(n, i, 3, align=4) for i in range(3)]
    assert np.concatenate(parts).tolist() == list(range(n))
    assert all(len(p) % 4 == 0 for p in parts[:-1])
