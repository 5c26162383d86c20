"""imgexp-explain on a descriptor + k-NN checkpoint (no parameters, no gradients): the
activations are the fused descriptor and the vector the vote compares, LIME explains each
image, Grad-CAM is left out and asking for it is a one-line error."""

import numpy as np
import pytest

from helpers.config import compose_config
from imgexp.errors import ImgexpError
from imgexp.explain.pipeline import run
from imgexp.models import load_model

SMALL = ["explain.max_images=60", "explain.k=5", "explain.attribution.n=1",
         "explain.attribution.lime_samples=24", "explain.progress=false"]


@pytest.mark.slow  # ~20 s: activations, clustering and LIME over 60 images
def test_descriptor_checkpoint_is_explained_without_grad_cam(cbir_ckpt, tmp_path):
    out = tmp_path / "explain"
    summary = run(compose_config("explain", [f"ckpt_path={cbir_ckpt}", *SMALL], out))

    assert summary["backbone"] == "DescriptorBackbone" and summary["layers"] == ["backbone",
                                                                                 "head"]
    width = load_model(cbir_ckpt).backbone.num_features
    assert np.load(out / "activations" / "backbone.npy").shape == (summary["images"], width)
    assert summary["accuracy"] > 0.5  # the k-NN vote over the descriptor gallery classifies
    assert summary["attribution"] and all((out / a["png"]).is_file()
                                          for a in summary["attribution"])
    assert all("no Grad-CAM" in a["caption"] for a in summary["attribution"])


def test_grad_cam_layer_on_descriptors_is_a_one_line_error(cbir_ckpt, tmp_path):
    cfg = compose_config("explain", [f"ckpt_path={cbir_ckpt}", *SMALL,
                                     "explain.attribution.layer=head"], tmp_path / "explain")
    with pytest.raises(ImgexpError, match=r"explain.attribution.layer=head: Grad-CAM needs "
                                          "gradients") as err:
        run(cfg)
    assert "\n" not in str(err.value)
