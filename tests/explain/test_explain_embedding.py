"""imgexp-explain on an embedding (triplet) model: the head's layer is the embedding, the
prediction is the k-NN vote over the checkpoint's gallery, Grad-CAM follows the nearest class
prototype."""

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.config import compose_config, train_config
from imgexp.data import load_rgb
from imgexp.explain.attribution import gradient_scores
from imgexp.explain.pipeline import run
from imgexp.models import heads, load_model

TRIPLET = ["experiment=digits_triplet", "data.image_size=16", "model.backbone.channels=[16,32]",
           "model.head.dim=32", "trainer.max_epochs=2", "~callbacks.progressive_unfreezing"]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(heads, "EmbeddingHead"),
                    reason="embedding heads come with the metric-learning issue (issue-metric)")
def test_embedding_checkpoint_is_explained(tmp_path, data_dir):
    from imgexp.train.fit import fit_and_test

    fit_and_test(train_config(TRIPLET, tmp_path / "train", data_dir))
    ckpt = tmp_path / "train" / "checkpoints" / "best.ckpt"
    out = tmp_path / "explain"
    summary = run(compose_config("explain", [
        f"ckpt_path={ckpt}", "explain.max_images=120", "explain.k=10",
        "explain.attribution.n=1", "explain.attribution.lime_samples=48"], out))

    assert summary["head"] == "embedding"
    assert summary["layers"] == ["backbone.features.3", "backbone.features.7", "backbone.neck",
                                 "head"]
    assert np.load(out / "activations" / "head.npy").shape == (summary["images"], 32)
    model = load_model(ckpt)
    images = pd.read_csv(out / "activations" / "images.csv")
    assert summary["accuracy"] == pytest.approx(images["correct"].mean(), abs=1e-4)
    assert summary["accuracy"] > 0.5  # the k-NN vote over the gallery classifies
    purity = pd.read_csv(out / "clustering" / "purity.csv").set_index("layer")
    assert purity.loc["head", "purity"] > purity.loc["backbone.features.3", "purity"]
    # Grad-CAM's smooth stand-in (nearest class prototype) mostly agrees with the vote
    x = torch.from_numpy(np.stack([load_rgb(p, 16) for p in images["path"][:40]]))
    x = x.permute(0, 3, 1, 2)
    agree = (gradient_scores(model)(x.float()).argmax(1) == model.predict_proba(x).argmax(1))
    assert agree.float().mean() >= 0.8
    assert all((out / a["png"]).is_file() for a in summary["attribution"])
