"""A descriptor + k-NN training run computes each image's descriptors once: the sanity check's
batches are reused by validation (model.backbone.cache, keyed by pixels); the train split
(gallery), validation and test are each one pass. With model.backbone.cache_dir the next run
and imgexp-eval describe nothing already described."""

import json

import pandas as pd
import pytest

from helpers.config import compose_config, train_config
from imgexp.models.descriptors import DescriptorBackbone

pytestmark = pytest.mark.slow  # two one-pass fits

DESCRIPTORS = ["model/backbone=descriptors", "model/head=knn", "model.backbone.kinds=[edge]",
               "data.image_size=16"]


def counting_describes(monkeypatch) -> list[int]:
    seen: list[int] = []
    original = DescriptorBackbone.describe

    def counting(self, pixels):
        seen.append(len(pixels))
        return original(self, pixels)

    monkeypatch.setattr(DescriptorBackbone, "describe", counting)
    return seen


def described_images(tmp_path, data_dir, monkeypatch, *extra) -> tuple[int, int]:
    """(images described during the fit, images in the split)."""
    from imgexp.train.fit import fit_and_test

    seen = counting_describes(monkeypatch)
    fit_and_test(train_config([*DESCRIPTORS, *extra], tmp_path, data_dir))
    return sum(seen), len(pd.read_csv(tmp_path / "data_split.csv"))


def test_a_training_run_describes_each_image_once(tmp_path, data_dir, monkeypatch):
    cached, images = described_images(tmp_path / "cached", data_dir, monkeypatch,
                                      "model.backbone.cache_dir=null")
    uncached, _ = described_images(tmp_path / "uncached", data_dir, monkeypatch,
                                   "model.backbone.cache=false")
    assert cached <= images + 1  # + the one-image width probe of the model built
    # without it the sanity check's validation batches are described a second time
    assert uncached > images + 1


def test_the_next_run_and_eval_describe_nothing_already_described(tmp_path, data_dir,
                                                                  monkeypatch):
    from imgexp.eval.pipeline import evaluate_checkpoint

    store = f"model.backbone.cache_dir={tmp_path / 'store'}"
    first, images = described_images(tmp_path / "first", data_dir, monkeypatch, store)
    assert first >= images  # an empty store: everything described once
    second, _ = described_images(tmp_path / "second", data_dir, monkeypatch, store)
    assert second <= 1  # the width probe only
    a, b = (json.loads((tmp_path / run / "metrics.json").read_text())["test/acc"]
            for run in ("first", "second"))
    assert a == b  # the stored descriptors are the computed ones

    seen = counting_describes(monkeypatch)
    cfg = compose_config("eval", [f"ckpt_path={tmp_path / 'first/checkpoints/best.ckpt'}",
                                  "log_to_run=false", "eval.progress=false"], tmp_path / "eval")
    evaluate_checkpoint(cfg)
    assert sum(seen) <= 1

    other, _ = described_images(tmp_path / "other", data_dir, monkeypatch, store,
                                "model.backbone.kinds=[color]")
    assert other >= images  # other settings, other descriptors: described again
