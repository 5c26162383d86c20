"""imgexp-select with hand-made descriptors as the features, two ways: a descriptor + k-NN
checkpoint (select.ckpt_path) or the descriptors themselves (model/backbone=descriptors, no
checkpoint, no weights). Either way the rows are the descriptors and go through the
content-keyed cache: a second run computes nothing."""

import json

import pytest

from helpers.app import make_gallery
from helpers.config import compose_config
from imgexp.models import load_model
from imgexp.models.descriptors import DescriptorBackbone
from imgexp.select.pipeline import run_select

BACKBONE = ["model/backbone=descriptors", "model.backbone.kinds=[color,edge]",
            "model.backbone.color.bins=4", "model.backbone.color.slices=2", "data.image_size=16"]


def select_twice(root, tmp_path, *extra):
    summaries = []
    for attempt in ("first", "again"):
        cfg = compose_config("select", ["data=folder", f"data.root={root}",
                                        f"select.cache_dir={tmp_path / 'cache'}",
                                        "select.n_clusters=3", "select.n_experiments=5",
                                        "select.device=cpu", *extra], tmp_path / attempt)
        run_select(cfg)
        summaries.append(json.loads((tmp_path / attempt / "summary.json").read_text()))
    return summaries


@pytest.fixture(scope="module")
def folder(tmp_path_factory, digits_root):
    return make_gallery(digits_root, tmp_path_factory.mktemp("select_cbir") / "images")


def test_select_with_a_descriptor_checkpoint(folder, cbir_ckpt, tmp_path):
    first, again = select_twice(folder, tmp_path, f"select.ckpt_path={cbir_ckpt}")
    n = first["n_images"]
    assert first["features"]["dim"] == load_model(cbir_ckpt).backbone.num_features
    assert (first["features"]["computed"], again["features"]["computed"]) == (n, 0)
    assert again["features"]["cached"] == n and again["n_selected"] == first["n_selected"]


def test_select_with_the_descriptor_backbone_and_no_checkpoint(folder, tmp_path):
    first, again = select_twice(folder, tmp_path, *BACKBONE)
    n = first["n_images"]
    width = DescriptorBackbone(kinds=["color", "edge"], color={"bins": 4, "slices": 2},
                               image_size=16).num_features
    assert first["features"]["dim"] == width
    assert (first["features"]["computed"], again["features"]["computed"]) == (n, 0)
    # another descriptor setting is another extractor: nothing of the first is reused
    other = compose_config("select", ["data=folder", f"data.root={folder}",
                                      f"select.cache_dir={tmp_path / 'cache'}",
                                      "select.n_clusters=3", "select.n_experiments=5",
                                      "select.device=cpu", *BACKBONE,
                                      "model.backbone.kinds=[edge]"], tmp_path / "edge")
    run_select(other)
    edge = json.loads((tmp_path / "edge" / "summary.json").read_text())
    assert edge["features"]["computed"] == n and edge["features"]["dim"] == 5 * 4 * 4
