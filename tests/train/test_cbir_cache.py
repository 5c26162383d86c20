"""A descriptor + k-NN training run computes each image's descriptors once: the sanity check's
batches are reused by validation (model.backbone.cache, keyed by pixels); the train split
(gallery), validation and test are each one pass."""

import pandas as pd
import pytest

from helpers.config import train_config
from imgexp.models.descriptors import DescriptorBackbone

pytestmark = pytest.mark.slow  # two one-pass fits

DESCRIPTORS = ["model/backbone=descriptors", "model/head=knn", "model.backbone.kinds=[edge]",
               "data.image_size=16"]


def described_images(tmp_path, data_dir, monkeypatch, *extra) -> tuple[int, int]:
    """(images described during the fit, images in the split)."""
    from imgexp.train.fit import fit_and_test

    seen = []
    original = DescriptorBackbone.describe

    def counting(self, pixels):
        seen.append(len(pixels))
        return original(self, pixels)

    monkeypatch.setattr(DescriptorBackbone, "describe", counting)
    fit_and_test(train_config([*DESCRIPTORS, *extra], tmp_path, data_dir))
    return sum(seen), len(pd.read_csv(tmp_path / "data_split.csv"))


def test_a_training_run_describes_each_image_once(tmp_path, data_dir, monkeypatch):
    cached, images = described_images(tmp_path / "cached", data_dir, monkeypatch)
    uncached, _ = described_images(tmp_path / "uncached", data_dir, monkeypatch,
                                   "model.backbone.cache=false")
    assert cached <= images + 1  # + the one-image width probe of the model built
    # without it the sanity check's validation batches are described a second time
    assert uncached > images + 1
