"""Feature extraction and its per-folder cache: counts on re-runs, resume after a crash."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from imgexp.device import resolve_precision
from imgexp.errors import ImgexpError
from imgexp.features.extractor import FeatureExtractor, extract_features


@pytest.fixture(scope="module")
def extractor(digits_ckpt):
    return FeatureExtractor.from_checkpoint(digits_ckpt)


@pytest.fixture
def small_digits(tmp_path, digits_root):
    """20 images of each of 3 classes, copied so the test may change them."""
    root = tmp_path / "digits"
    for cls in ("0", "1", "2"):
        (root / cls).mkdir(parents=True)
        for path in sorted((digits_root / cls).glob("*.png"))[:20]:
            shutil.copy(path, root / cls / path.name)
    return root


def files(root):
    return sorted(root.rglob("*.png"))


def test_checkpoint_extractor_gives_the_models_embeddings(extractor, digits_ckpt, small_digits):
    assert extractor.image_size == 16 and "mode=embed" in extractor.identity
    # auto: the precision the run tested in (fp32), or $IMGEXP_PRECISION's; the key says which
    assert extractor.precision in ("bf16", "fp32")
    assert f"size=16|precision={extractor.precision}" in extractor.identity
    feats, stats = extract_features(files(small_digits), extractor, batch_size=16, progress=False)
    assert feats.shape == (60, 128) and feats.dtype == np.float32
    assert np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)  # embed is L2-normalised
    assert stats["computed"] == 60 and stats["cached"] == 0 and stats["unreadable"] == []


def test_backbone_extractor_from_a_config(small_digits):
    cfg = {"_target_": "imgexp.models.backbones.SimpleCNN", "channels": [8, 16],
           "dense_units": 24, "image_size": 16}
    a = FeatureExtractor.from_backbone(cfg, image_size=16, seed=1)
    b = FeatureExtractor.from_backbone(cfg, image_size=16, seed=1)
    c = FeatureExtractor.from_backbone(cfg, image_size=16, seed=2)
    assert a.identity == b.identity != c.identity and "random-init:seed=1" in a.identity
    fa, _ = extract_features(files(small_digits)[:10], a, progress=False)
    fb, _ = extract_features(files(small_digits)[:10], b, progress=False)
    assert fa.shape == (10, 24) and np.array_equal(fa, fb)  # same seed, same weights


def test_rerun_computes_nothing_and_a_changed_file_is_recomputed(extractor, small_digits,
                                                                tmp_path):
    cache = tmp_path / "cache"
    paths = files(small_digits)
    first, s1 = extract_features(paths, extractor, cache, batch_size=16, progress=False)
    again, s2 = extract_features(paths, extractor, cache, batch_size=16, progress=False)
    assert (s1["computed"], s1["cached"]) == (60, 0)
    assert (s2["computed"], s2["cached"]) == (60 - 60, 60)
    assert np.array_equal(first, again)

    changed = paths[7]
    Image.fromarray(255 - np.asarray(Image.open(changed))).save(changed)
    third, s3 = extract_features(paths, extractor, cache, batch_size=16, progress=False)
    assert (s3["computed"], s3["cached"]) == (1, 59)
    fresh, _ = extract_features([changed], extractor, progress=False)
    assert np.allclose(third[7], fresh[0], atol=1e-6) and not np.allclose(third[7], first[7])

    (small_digits / "3").mkdir()  # a new folder: only its images are computed
    shutil.copy(paths[0], small_digits / "3" / "new.png")
    _, s4 = extract_features(files(small_digits), extractor, cache, progress=False)
    assert (s4["computed"], s4["cached"]) == (1, 60)
    _, s5 = extract_features(files(small_digits), extractor, cache, recompute=True,
                             progress=False)
    assert (s5["computed"], s5["cached"]) == (61, 0)


def test_interrupted_run_resumes_losing_at_most_one_chunk(extractor, small_digits, tmp_path,
                                                          monkeypatch):
    cache = tmp_path / "cache"
    paths = files(small_digits)
    calls = {"n": 0}
    real_call = FeatureExtractor.__call__

    def crash_on_fourth_batch(self, images):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_call(self, images)

    monkeypatch.setattr(FeatureExtractor, "__call__", crash_on_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        extract_features(paths, extractor, cache, batch_size=8, chunk_size=8, progress=False)
    monkeypatch.setattr(FeatureExtractor, "__call__", real_call)
    feats, stats = extract_features(paths, extractor, cache, batch_size=8, chunk_size=8,
                                    progress=False)
    assert stats["cached"] == 24 and stats["computed"] == 36  # 3 chunks of 8 were kept
    reference, _ = extract_features(paths, extractor, progress=False)
    assert np.allclose(feats, reference, atol=1e-6)
    assert not list(cache.rglob(".tmp-*"))  # no half-written chunk left behind


def test_unreadable_images_get_nan_rows_and_are_listed(extractor, small_digits, tmp_path):
    bad = small_digits / "1" / "broken.png"
    bad.write_bytes(b"not a png")
    paths = files(small_digits)
    feats, stats = extract_features(paths, extractor, tmp_path / "cache", progress=False)
    row = paths.index(bad)
    assert stats["unreadable"] == [str(bad)] and np.isnan(feats[row]).all()
    assert np.isfinite(np.delete(feats, row, axis=0)).all() and stats["computed"] == 60


def test_export_csv_writes_the_seeds_feature_csv(extractor, small_digits, tmp_path):
    import pandas as pd

    cache = tmp_path / "cache"
    feats, _ = extract_features(files(small_digits), extractor, cache, export_csv=True,
                                progress=False)
    csvs = sorted(cache.rglob("feature.csv"))
    assert len(csvs) == 3  # one per source folder
    table = pd.concat(pd.read_csv(c) for c in csvs)
    assert len(table) == 60 and list(table.columns[:2]) == ["file", "sha256"]
    assert table.shape[1] == 2 + feats.shape[1]
    assert not list(small_digits.rglob("*.csv"))  # nothing written next to the images


def test_imgexp_precision_decides_auto_and_nothing_else(monkeypatch):
    cpu = torch.device("cpu")
    for forced in ("bf16", "fp32"):
        monkeypatch.setenv("IMGEXP_PRECISION", forced)
        assert resolve_precision("auto", cpu) == forced
        assert resolve_precision("fp32", cpu) == "fp32"  # an explicit choice still wins
    monkeypatch.setenv("IMGEXP_PRECISION", "fp16")
    with pytest.raises(ImgexpError, match="IMGEXP_PRECISION='fp16' is not an option"):
        resolve_precision("auto", cpu)


def test_auto_reads_a_cache_in_the_precision_it_was_written_in(small_digits, tmp_path,
                                                               monkeypatch):
    """Shards on one machine (fp32) filled the cache; the clustering step on another (bf16)
    reads every feature from it instead of computing all of them again in bf16 (main: 313
    images selected instead of 327). An explicit select.precision is a cache of its own."""
    cache, paths = tmp_path / "cache", files(small_digits)
    backbone = {"_target_": "imgexp.models.backbones.SimpleCNN", "channels": [8],
                "dense_units": 8, "image_size": 16}
    written = {}
    for machine in ("fp32", "bf16"):  # what the hardware rule gives on each machine
        monkeypatch.setenv("IMGEXP_PRECISION", machine)
        extractor = FeatureExtractor.from_backbone(backbone, image_size=16)
        written[machine] = extract_features(paths, extractor, cache_dir=cache, progress=False)
    (first, shard), (second, clustering) = written["fp32"], written["bf16"]
    assert shard["computed"] == 60 and shard["precision"] == "fp32"
    assert clustering["cached"] == 60 and clustering["computed"] == 0
    assert clustering["precision"] == "fp32" and np.array_equal(first, second)
    explicit = FeatureExtractor.from_backbone(backbone, image_size=16, precision="bf16")
    _, stats = extract_features(paths, explicit, cache_dir=cache, progress=False)
    assert stats["computed"] == 60 and stats["precision"] == "bf16"
