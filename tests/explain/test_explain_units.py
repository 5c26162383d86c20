"""The pieces of imgexp-explain on hand-made inputs: sampling, k choice, purity, paths,
superpixels, the Grad-CAM layer."""


import numpy as np
import pandas as pd
import pytest

from imgexp.errors import ImgexpError
from imgexp.explain import attribution, clustering, layer_paths
from imgexp.explain.inputs import stratified_sample


# -- the pieces ------------------------------------------------------------------------------
def test_stratified_sample_keeps_class_shares():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    picked = stratified_sample(labels, 100, seed=0)
    assert len(picked) == 100 and len(set(picked)) == 100
    assert np.bincount(labels[picked]).tolist() == [60, 30, 10]
    rare = np.repeat([0, 1], [995, 5])
    assert 1 in rare[stratified_sample(rare, 10, seed=0)]  # every class is represented
    assert len(stratified_sample(labels, None, 0)) == 1000


def test_elbow_and_purity():
    assert clustering.elbow_k([2, 3, 4, 5, 6, 7], [100, 40, 12, 10, 9, 8]) == 4
    classes = np.array([0, 0, 0, 1, 1, 1])
    assert clustering.purity(np.array([0, 0, 0, 1, 1, 1]), classes) == 1.0
    assert clustering.purity(np.array([0, 0, 0, 1, 1, 0]), classes) == pytest.approx(5 / 6)


def test_auto_k_finds_well_separated_blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 20, (4, 8))
    x = np.concatenate([c + rng.normal(0, 0.5, (30, 8)) for c in centres])
    for rule in ("silhouette", "elbow"):
        result = clustering.cluster_layer("blobs", x, "auto", 8, rule, seed=0)
        assert result.k == 4
        assert clustering.purity(result.labels, np.repeat(np.arange(4), 30)) == 1.0
    with pytest.raises(ImgexpError, match="explain.k"):
        clustering.cluster_layer("blobs", x, 1, 8, "elbow", seed=0)


def test_path_typicality_flags_the_wandering_image():
    table = pd.DataFrame({"path": list("abcdef"), "true": list("xxxyyy"),
                          "predicted": list("xxxyyx"), "confidence": [0.9] * 6,
                          "correct": [True] * 5 + [False]})
    # f, a y predicted as x, goes through y's clusters: atypical of x, foreign at both layers
    clusters = {"l1": np.array([0, 0, 0, 1, 1, 1]), "l2": np.array([5, 5, 5, 7, 7, 7])}
    ranked = layer_paths.path_table(table, clusters)
    assert ranked.loc[5, "typicality"] == pytest.approx(0.25)  # 1 of 4 "x" paths, each layer
    assert ranked.loc[0, "typicality"] == pytest.approx(0.75)
    assert ranked.loc[5, "foreign_layers"] == 2 and ranked.loc[0, "foreign_layers"] == 0
    assert layer_paths.least_typical(ranked, per_class=1)["path"].tolist() == ["f", "d"]


def test_superpixels_are_contiguous_regions_that_follow_edges():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = (250, 30, 30)
    segments = attribution.superpixels(image, 8)
    assert 6 <= segments.max() + 1 <= 16
    assert set(np.unique(segments)) == set(range(segments.max() + 1))
    for region in np.unique(segments):  # no region straddles the colour edge
        columns = np.nonzero(segments == region)[1]
        assert columns.max() < 16 or columns.min() >= 16


def _resnet18_classifier():
    from imgexp.models.backbones import TimmBackbone
    from imgexp.models.heads import SoftmaxHead
    from imgexp.models.losses import CrossEntropyLoss
    from imgexp.models.module import ImageClassifier

    backbone = TimmBackbone("resnet18", pretrained=False)
    return ImageClassifier(backbone, SoftmaxHead(in_features=backbone.num_features,
                                                 num_classes=2),
                           CrossEntropyLoss(), class_names=["a", "b"]).eval()


def test_grad_cam_picks_the_deepest_layer_larger_than_1x1(caplog):
    from imgexp.explain.activations import grad_cam_layer, map_sizes

    model = _resnet18_classifier()
    # at 32 px resnet18's last stage (layer4, the deepest block) is 1x1: a flat heat map
    layer = grad_cam_layer(model, None, (32, 32))
    assert layer == "backbone.model.layer3"
    assert map_sizes(model, [layer], (32, 32))[layer] == (2, 2)
    assert grad_cam_layer(model, None, (224, 224)) == "backbone.model.layer4"
    # a 1x1 layer the user asks for is used, with a warning saying what to do
    with caplog.at_level("WARNING", logger="imgexp.explain.activations"):
        assert grad_cam_layer(model, "backbone.model.layer4", (32, 32)) == "backbone.model.layer4"
    assert "1x1 at 32x32 px" in caplog.text and "explain.attribution.layer" in caplog.text
