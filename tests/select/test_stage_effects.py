"""Effect tests for prepare, select and predict options that had none (tests/EFFECTS.md): each
moves one option and measures what it is said to change, against the default."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, JpegImagePlugin

from helpers.config import compose_config
from helpers.prepare import make_classes, run_prepare_on
from imgexp.features.extractor import FeatureExtractor
from imgexp.predict.pipeline import predict_folder
from imgexp.prepare import checks as inspect


def test_prepare_ratios_set_the_split_shares(tmp_path):
    make_classes(tmp_path / "src", {"a": 20, "b": 20})

    def counts(*overrides) -> Counter:
        out = run_prepare_on(tmp_path / "src", tmp_path / str(len(overrides)), *overrides)
        return Counter((r["label"], r["split"]) for r in out.manifest)

    default = counts()  # 0.7 / 0.15 / 0.15 of 20 per class
    assert default[("a", "train")] == 14 and default[("a", "test")] == 3
    halves = counts("prepare.ratios=[0.5,0.5,0]")
    assert halves == {(c, s): 10 for c in "ab" for s in ("train", "val")}


def test_prepare_min_size_rejects_smaller_images(tmp_path):
    make_classes(tmp_path / "src", {"a": 3, "b": 3})
    Image.new("RGB", (10, 10), (200, 30, 30)).save(tmp_path / "src" / "b" / "small.png")
    default = run_prepare_on(tmp_path / "src", tmp_path / "default")
    assert "b/small.png" not in default.rejected
    strict = run_prepare_on(tmp_path / "src", tmp_path / "strict", "prepare.min_size=12")
    assert strict.rejected["b/small.png"].startswith("too small: 10x10 < prepare.min_size=12")


@pytest.mark.parametrize("full_decode,drafts", [("false", True), ("true", False)])
def test_prepare_full_decode_skips_the_dct_scaled_decode(tmp_path, monkeypatch, full_decode,
                                                          drafts):
    make_classes(tmp_path / "src", {"a": 2, "b": 2}, ext=".jpg")
    calls = []
    real = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    monkeypatch.setattr(inspect, "default_workers", lambda: 1)  # checks in this process
    out = run_prepare_on(tmp_path / "src", tmp_path / "run", "prepare.workers=1",
                         f"prepare.full_decode={full_decode}")
    assert len(out.manifest) == 4
    assert bool(calls) is drafts


def test_select_ckpt_features_embed_or_raw_features(digits_ckpt, digits_root):
    images = torch.stack([torch.from_numpy(np.array(
        Image.open(p).convert("RGB").resize((16, 16)))).permute(2, 0, 1)
        for p in sorted((digits_root / "3").glob("*.png"))[:4]])

    def extract(mode):
        extractor = FeatureExtractor.from_checkpoint(digits_ckpt, mode=mode, device="cpu",
                                                     precision="fp32", channels_last=False)
        return extractor(images), extractor.identity

    (embed, id_embed), (raw, id_raw) = extract("embed"), extract("features")
    torch.testing.assert_close(embed.norm(dim=1), torch.ones(4))
    assert not torch.allclose(raw.norm(dim=1), torch.ones(4), atol=1e-3)
    torch.testing.assert_close(embed, torch.nn.functional.normalize(raw, dim=1))
    assert id_embed != id_raw  # cached apart


def test_predict_top_k_sets_the_listed_classes(tmp_path, digits_ckpt, digits_root):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for p in sorted((digits_root / "7").glob("*.png"))[:3]:
        (inputs / p.name).write_bytes(p.read_bytes())

    def columns(top_k):
        out = tmp_path / f"out{top_k}"
        cfg = compose_config("predict", [f"ckpt_path={digits_ckpt}", f"input={inputs}",
                                         f"output={out}", "predict.num_workers=0", "device=cpu",
                                         "predict.mode=none", f"predict.top_k={top_k}"],
                             tmp_path / f"run{top_k}")
        predict_folder(cfg)
        table = pd.read_csv(out / "predictions.csv", dtype=str)
        return [c for c in table.columns if c.startswith("top")], table

    listed, _ = columns(1)
    assert listed == ["top1_class", "top1_score"]
    listed, table = columns(4)
    assert listed == [f"top{k}_{w}" for k in range(1, 5) for w in ("class", "score")]
    assert (table["top1_class"] == table["predicted"]).all()


def test_select_kcenter_dim_sets_the_traversal_space():
    from types import SimpleNamespace

    from imgexp.select.pipeline import selection_space

    space = np.random.default_rng(0).normal(size=(200, 32))
    clusters = SimpleNamespace(space=space)
    assert selection_space(clusters, 8, seed=0).shape == (200, 8)
    assert selection_space(clusters, None, seed=0) is space  # null: every dimension


def test_select_score_sizes_set_the_spread_and_the_sample():
    from imgexp.select.similarity import redundancy_score, similarity_score

    features = np.random.default_rng(1).normal(size=(400, 16))
    center = features.mean(0)
    few = similarity_score(features, center, n_experiments=50, pairs_per_experiment=10)
    many = similarity_score(features, center, n_experiments=50, pairs_per_experiment=2000)
    assert few["std"] > 5 * many["std"]  # spread of a mean of P pairs ~ 1 / sqrt(P)
    small = redundancy_score(features, center, sample_size=20, n_experiments=10)
    large = redundancy_score(features, center, sample_size=300, n_experiments=10)
    assert (small["sample_size"], large["sample_size"]) == (20, 300)
    assert large["mean"] > small["mean"]  # more images, closer nearest look-alikes


def test_select_builds_a_backbone_whose_config_points_into_the_rest(tmp_path):
    """simple_cnn's image_size is `${data.image_size}`: it must resolve against select's config."""
    from helpers.config import compose_config
    from imgexp.select.pipeline import build_extractor

    cfg = compose_config("select", ["model/backbone=simple_cnn", "data.root=/images",
                                    "data.image_size=24", "select.precision=fp32"], tmp_path)
    extractor = build_extractor(cfg)
    assert extractor.image_size == 24
    assert '"image_size": 24' in extractor.identity
