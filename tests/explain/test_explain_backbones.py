"""imgexp-explain on timm checkpoints: the default layers are timm's stages (feature_info) plus
the head, and the whole report is produced. Tiny random-init runs (one training batch)."""

import numpy as np
import pandas as pd
import pytest

from helpers.config import compose_config, train_config
from imgexp.explain.pipeline import run

TIMM_STAGES = {
    "resnet50": (["act1", "layer1", "layer2", "layer3", "layer4"], [64, 256, 512, 1024, 2048]),
    "efficientnet_b0": (["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"],
                        [16, 24, 40, 112, 320]),
}
# at 32 px both last stages are 1x1 (stride 32): Grad-CAM takes the deepest one larger than that
GRAD_CAM = {"resnet50": "layer3", "efficientnet_b0": "blocks.4"}


def tiny_checkpoint(backbone: str, out, data_dir):
    from imgexp.train.fit import fit_and_test

    cfg = train_config([f"model/backbone={backbone}", "data.image_size=32", "data.batch_size=8",
                        "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                        "+trainer.limit_val_batches=1", "+trainer.num_sanity_val_steps=0",
                        "test=false"], out, data_dir)
    fit_and_test(cfg)
    return out / "checkpoints" / "best.ckpt"


@pytest.mark.slow
@pytest.mark.parametrize("backbone", sorted(TIMM_STAGES))
def test_timm_checkpoints_are_explained_stage_by_stage(backbone, tmp_path, data_dir):
    ckpt = tiny_checkpoint(backbone, tmp_path / "train", data_dir)
    out = tmp_path / "explain"
    cfg = compose_config("explain", [
        f"ckpt_path={ckpt}", "explain.max_images=20", "explain.k=3",
        "explain.attribution.n=1", "explain.attribution.lime_samples=24",
        "explain.attribution.superpixels=8"], out)
    summary = run(cfg)

    stages, widths = TIMM_STAGES[backbone]
    layers = [f"backbone.model.{s}" for s in stages] + ["head"]
    assert summary["layers"] == layers
    purity = pd.read_csv(out / "clustering" / "purity.csv")
    assert purity["layer"].tolist() == layers
    assert purity["dim"].tolist() == [*widths, 10]
    assert (purity["k"] == 3).all() and purity["purity"].between(0.1, 1.0).all()
    for layer, width in zip(layers, [*widths, 10], strict=True):
        assert np.load(out / "activations" / f"{layer}.npy").shape == (summary["images"], width)
        assert (out / "maps" / f"{layer}.html").is_file()
    assert summary["attribution"] and all((out / a["png"]).is_file()
                                          for a in summary["attribution"])
    assert summary["attribution"][0]["caption"].endswith(
        f"Grad-CAM at backbone.model.{GRAD_CAM[backbone]}")
    assert (out / "index.html").is_file() and (out / "paths" / "paths.html").is_file()
