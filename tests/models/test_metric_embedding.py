"""Embedding models end to end: configs, the k-NN classifier in the checkpoint, metrics.json."""

import json

import pytest
import torch

from helpers.config import compose_config, train_config
from imgexp.data.build import build_datamodule
from imgexp.errors import ImgexpError
from imgexp.metrics import retrieval_metrics
from imgexp.models import build_model, load_model
from imgexp.train.fit import fit_and_test
from imgexp.training.finetune import ProgressiveUnfreezing

CLASSES = [str(d) for d in range(10)]
# the CI variant of experiment=digits_triplet: 16 px, two conv blocks, 5 epochs
SMALL = ["experiment=digits_triplet", "data.image_size=16", "model.backbone.channels=[16,32]",
         "trainer.max_epochs=5", "data.cache=null"]


def test_experiment_and_groups_compose_to_the_recipe(tmp_path):
    cfg = compose_config("train", ["experiment=digits_triplet"], tmp_path)
    assert cfg.monitor == "val/precision_at_1"
    assert cfg.optimized_metric == "val/precision_at_1_best"
    assert cfg.data.sampler == "pk" and cfg.model.loss.mining == "batch_hard"
    assert "progressive_unfreezing" in cfg.callbacks
    # a triplet loss picks the P x K sampler unless the user says otherwise
    cfg = compose_config("train", ["model/head=embedding", "model/loss=triplet"], tmp_path)
    assert cfg.data.sampler == "pk" and cfg.monitor == "val/precision_at_1"
    cfg = compose_config("train", ["model/head=embedding", "model/loss=triplet",
                                   "data.sampler=none"], tmp_path)
    assert cfg.data.sampler == "none"


def test_gravure_recipe_builds_efficientnet_with_one_group_per_stage(tmp_path):
    cfg = compose_config("train", ["experiment=gravure_triplet", "data.root=/nowhere",
                                   "model.backbone.pretrained=false"], tmp_path)
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.data.min_per_class) == (16, 50, 10)
    assert cfg.augmentation.transforms[0]._target_ == "albumentations.HorizontalFlip"
    model = build_model(cfg, ["a", "b", "c"])
    assert model.head.kind == "embedding" and model.head.dim == 128
    groups = ProgressiveUnfreezing(unfreeze_at=[2, 5, 8], lr_decay=0.5).plan(model)
    names = [g["name"] for g in groups]
    assert names[-1] == "head" and len(names) == 9  # stem + 7 block stages + head
    epochs = {g["name"]: g["epoch"] for g in groups}
    assert epochs["backbone.stage7"] == 2 and epochs["backbone.stage0"] == 8
    assert groups[0]["lr_factor"] == 0.5 and groups[-2]["lr_factor"] == 0.5 ** 8
    in_groups = sum(p.numel() for g in groups for p in g["params"])
    assert in_groups == sum(p.numel() for p in model.parameters())


def test_head_and_loss_must_match(tmp_path, data_dir):
    with pytest.raises(ImgexpError, match="model/loss=hard_triplet"):
        build_model(train_config(["model/head=embedding"], tmp_path, data_dir), CLASSES)
    with pytest.raises(ImgexpError, match="model/head=embedding"):
        build_model(train_config(["model/loss=hard_triplet"], tmp_path, data_dir), CLASSES)
    with pytest.raises(ImgexpError, match="model.head.dim=0"):
        build_model(train_config(["experiment=digits_triplet", "model.head.dim=0"], tmp_path,
                                 data_dir), CLASSES)


def test_embedding_model_without_gallery_says_so(tmp_path, data_dir):
    model = build_model(train_config(SMALL, tmp_path, data_dir), CLASSES).eval()
    with pytest.raises(ImgexpError, match="no gallery"):
        model.predict_proba(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))


@pytest.fixture(scope="module")
def triplet_run(tmp_path_factory, data_dir):
    run_dir = tmp_path_factory.mktemp("triplet_run")
    metrics = fit_and_test(train_config(SMALL, run_dir, data_dir))
    return run_dir, metrics


@pytest.mark.slow
def test_digits_triplet_learns_and_writes_retrieval_metrics(triplet_run):
    run_dir, metrics = triplet_run
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/acc", "test/f1_macro", "test/knn_acc", "test/precision_at_1",
                "test/map_at_r", "test/r_precision", "val/precision_at_1_best",
                "train/active_triplets", "train/embedding_spread"):
        assert key in on_disk, key
    assert on_disk["test/knn_acc"] >= 0.9 and on_disk["test/precision_at_1"] >= 0.9
    assert on_disk["test/acc"] == pytest.approx(on_disk["test/knn_acc"], abs=1e-6)
    assert 0.5 < on_disk["test/map_at_r"] <= on_disk["test/r_precision"] <= 1
    assert on_disk["test/n_queries_without_gallery_class"] == 0
    assert on_disk["train/embedding_spread"] > 0.3  # not collapsed
    assert "best.ckpt" in metrics["best_model_path"]


@pytest.mark.slow
def test_checkpoint_alone_classifies_by_knn_over_its_gallery(triplet_run, data_dir):
    run_dir, metrics = triplet_run
    model = load_model(run_dir / "checkpoints" / "best.ckpt")
    cfg = train_config(SMALL, run_dir / "again", data_dir)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    assert len(model.gallery_labels) == len(datamodule.datasets["train"])
    batches = list(datamodule.test_dataloader())
    images = torch.cat([b["image"] for b in batches])
    labels = torch.cat([b["label"] for b in batches])
    proba = model.predict_proba(images)
    assert proba.shape == (len(labels), 10)
    torch.testing.assert_close(proba.sum(1), torch.ones(len(labels)))
    acc = (proba.argmax(1) == labels).float().mean().item()
    assert acc == pytest.approx(metrics["test/acc"], abs=1e-6)
    emb = model.embed(images)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(len(labels)))
    figures = retrieval_metrics(emb, labels, model.gallery_embeddings, model.gallery_labels)
    assert figures["precision_at_1"] == pytest.approx(metrics["test/precision_at_1"], abs=1e-6)
    assert figures["map_at_r"] == pytest.approx(metrics["test/map_at_r"], abs=1e-6)
