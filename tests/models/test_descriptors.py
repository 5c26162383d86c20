"""The CBIR descriptors: what each kind and each parameter does to the vector."""

import numpy as np
import pytest
import torch

from imgexp.errors import ImgexpError
from imgexp.models.descriptors import DescriptorBackbone, color_histogram

SIZE = 32


def pixels(seed: int = 0, n: int = 2) -> torch.Tensor:
    """Smooth random RGB images in [0, 1] (N, 3, H, W): gradients + blobs, so every kind sees
    edges, texture and colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    images = []
    for _ in range(n):
        a, b, c = rng.uniform(0.5, 4, 3)
        img = np.stack([np.sin(a * np.pi * xx + c) * 0.5 + 0.5,
                        np.cos(b * np.pi * yy) * 0.5 + 0.5,
                        (xx * yy + rng.uniform(0, 0.3, (SIZE, SIZE))) / 1.3])
        images.append(img)
    return torch.tensor(np.stack(images), dtype=torch.float32)


def backbone(kinds, **kwargs) -> DescriptorBackbone:
    return DescriptorBackbone(kinds=kinds, image_size=SIZE, mean=(0, 0, 0), std=(1, 1, 1),
                              cache=False, **kwargs)


@pytest.mark.parametrize("space", ["rgb", "hsv", "lab"])
def test_colour_histogram_of_pure_red_is_one_bin(space):
    red = np.zeros((1, 8, 8, 3))
    red[..., 0] = 1.0
    hist = color_histogram(red, bins=4, slices=1, space=space)
    assert hist.shape == (1, 64)
    assert np.count_nonzero(hist) == 1 and hist.max() == 1.0
    # two colours in the left and right halves: with 2 slices per side each region is pure
    half = red.copy()
    half[:, :, 4:] = [0.0, 0.0, 1.0]
    assert np.count_nonzero(color_histogram(half, bins=4, slices=1, space=space)) == 2
    assert np.count_nonzero(color_histogram(half, bins=4, slices=2, space=space)) == 4


@pytest.mark.parametrize("kind", ["color", "edge", "hog", "gabor", "daisy"])
def test_each_kind_describes_the_image(kind):
    model = backbone([kind])
    a, b = model.describe(pixels(0)), model.describe(pixels(1))
    assert a.shape == (2, model.num_features) and torch.isfinite(a).all()
    assert not torch.allclose(a, b)  # another image, another vector
    assert torch.allclose(a.norm(dim=1), torch.ones(2), atol=1e-5)  # one unit block


@pytest.mark.parametrize("kind,params", [
    ("color", {"bins": 6}), ("color", {"slices": 2}), ("color", {"space": "hsv"}),
    ("color", {"space": "lab"}), ("edge", {"slices": 2}), ("hog", {"orientations": 6}),
    ("hog", {"pixels_per_cell": 4}), ("hog", {"cells_per_block": 1}),
    ("gabor", {"frequencies": [0.2]}), ("gabor", {"orientations": 2}),
    ("daisy", {"step": 8}), ("daisy", {"radius": 6}), ("daisy", {"rings": 3}),
    ("daisy", {"histograms": 4}), ("daisy", {"orientations": 6})])
def test_every_parameter_changes_the_vector(kind, params):
    default = backbone([kind]).describe(pixels())
    changed = backbone([kind], **{kind: params}).describe(pixels())
    assert default.shape != changed.shape or not torch.allclose(default, changed)


def test_fusion_concatenates_weighted_unit_blocks():
    color, edge = backbone(["color"]), backbone(["edge"])
    fused = backbone(["color", "edge"], weights={"edge": 0.5})
    x = pixels()
    out = fused.describe(x)
    assert fused.num_features == color.num_features + edge.num_features
    assert torch.allclose(out[:, :color.num_features], color.describe(x))
    assert torch.allclose(out[:, color.num_features:], 0.5 * edge.describe(x))


def test_forward_undoes_the_model_normalisation_and_caches_by_content():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    model = DescriptorBackbone(kinds=["color"], image_size=SIZE, mean=mean, std=std)
    x = pixels()
    normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(model(normalised), model.describe(x), atol=1e-6)
    computed = model.computed
    model(normalised[[1, 0]])  # the same pixels again, in another order: nothing computed
    assert model.computed == computed
    uncached = DescriptorBackbone(kinds=["color"], image_size=SIZE, cache=False)
    uncached(normalised)
    before = uncached.computed
    uncached(normalised)
    assert uncached.computed == before + 2


@pytest.mark.parametrize("kwargs,key", [
    ({"kinds": ["sift"]}, "kinds"), ({"kinds": []}, "kinds"),
    ({"kinds": ["color"], "weights": {"edge": 1.0}}, "weights"),
    ({"kinds": ["color"], "color": {"space": "cmyk"}}, "space"),
    ({"kinds": ["hog"], "hog": {"pixels_per_cell": 32}}, "hog"),
    ({"kinds": ["daisy"], "daisy": {"radius": 20}}, "radius")])
def test_bad_settings_are_one_line_errors_naming_the_key(kwargs, key):
    with pytest.raises(ImgexpError, match=key):
        DescriptorBackbone(image_size=SIZE, **kwargs)
