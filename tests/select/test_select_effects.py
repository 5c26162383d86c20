"""Effect tests for select options that had none (tests/EFFECTS.md): each moves one option and
measures what it is said to change, against the default."""

import numpy as np
import torch
from PIL import Image

from helpers.config import compose_config
from imgexp.features.extractor import FeatureExtractor


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


def test_select_kcenter_dim_sets_the_traversal_space():
    from types import SimpleNamespace

    from imgexp.select.pipeline import selection_transform

    space = np.random.default_rng(0).normal(size=(200, 32))
    clusters = SimpleNamespace(space=space)
    assert selection_transform(clusters, 8, seed=0)(np.arange(50)).shape == (50, 8)
    assert selection_transform(clusters, None, seed=0) is None  # null: every dimension


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
    from imgexp.select.pipeline import build_extractor

    cfg = compose_config("select", ["model/backbone=simple_cnn", "data.root=/images",
                                    "data.image_size=24", "select.precision=fp32"], tmp_path)
    extractor = build_extractor(cfg)
    assert extractor.image_size == 24
    assert '"image_size": 24' in extractor.identity
