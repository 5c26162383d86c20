"""Effect tests for the README's Models switches, losses and heads (and their Metric learning
options): each composes conf/train.yaml with the switch, builds the model the run would build
(build_model / the trainer config), and measures what the switch is said to change against the
default. Only the scheduler, clipping and early-stopping tests train, for a few batches."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from sklearn.utils.class_weight import compute_class_weight

from helpers.config import train_config
from imgexp.data.build import build_datamodule
from imgexp.models import build_model
from imgexp.train.fit import fit_and_test

TINY = ["data.image_size=16", "model.backbone.channels=[8,16]", "model.backbone.dense_units=32",
        "data.batch_size=16"]
CLASSES = [str(i) for i in range(4)]


def _cfg(tmp_path, data_dir, overrides):
    return train_config([*TINY, *overrides], tmp_path / "run", data_dir)


def _model(tmp_path, data_dir, overrides, labels=None):
    labels = np.repeat(np.arange(len(CLASSES)), 5) if labels is None else labels
    return build_model(_cfg(tmp_path, data_dir, overrides), CLASSES, labels)


def _images(n=4, size=16):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


# -- optimiser and schedule -------------------------------------------------------------------
@pytest.mark.parametrize("name,cls,extra", [
    ("adam", torch.optim.Adam, {"weight_decay": 0.0}),
    ("adamw", torch.optim.AdamW, {"weight_decay": 0.05}),
    ("sgd", torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}),
])
def test_optimizer_choice_and_lr_build_that_optimizer(tmp_path, data_dir, name, cls, extra):
    model = _model(tmp_path, data_dir, [f"optimizer={name}", "optimizer.lr=0.0123",
                                        "scheduler=none"])
    optimizer = model.configure_optimizers()  # scheduler=none: the bare optimiser
    assert type(optimizer) is cls
    (group,) = optimizer.param_groups
    assert group["lr"] == 0.0123 and {k: group[k] for k in extra} == extra
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}


class _Record(Callback):
    """The LR each step runs at, and the gradient norm each optimiser step used."""

    def __init__(self):
        self.lrs, self.grad_norms = [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        # Lightning zeroes gradients at the next step's start: these are the ones just applied
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        self.grad_norms.append(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads])).item())


def _train_steps(tmp_path, data_dir, overrides, epochs=2, batches=5) -> _Record:
    """A few optimiser steps with the trainer, optimiser and schedule the config builds."""
    cfg = _cfg(tmp_path, data_dir, ["data.image_size=8", "data.batch_size=8",
                                    f"trainer.max_epochs={epochs}",
                                    f"+trainer.limit_train_batches={batches}",
                                    "+trainer.limit_val_batches=0", *overrides])
    datamodule = build_datamodule(cfg)
    datamodule.resolve()
    model = build_model(cfg, datamodule.classes, datamodule.train_labels())
    record = _Record()
    trainer = instantiate(cfg.trainer, callbacks=[record], logger=False,
                          enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    assert len(record.lrs) == epochs * batches
    return record


def test_onecycle_runs_over_every_step_of_the_run(tmp_path, data_dir):
    lrs = _train_steps(tmp_path, data_dir, ["scheduler=onecycle", "optimizer.lr=0.01"]).lrs
    # 10 steps, pct_start 0.3: from lr/25 up to lr at step 2, down to lr/25/1e4 at the last
    assert lrs[0] == pytest.approx(0.01 / 25, rel=1e-6)
    assert max(lrs) == pytest.approx(0.01, rel=1e-6) and int(np.argmax(lrs)) == 2
    assert lrs[-1] == pytest.approx(0.01 / 25 / 1e4, rel=1e-6)
    assert np.all(np.diff(lrs[:3]) > 0) and np.all(np.diff(lrs[2:]) < 0)


def test_cosine_warms_up_then_decays_per_step(tmp_path, data_dir):
    lrs = _train_steps(tmp_path, data_dir, ["scheduler=cosine", "optimizer.lr=0.01",
                                            "scheduler.warmup_steps=2"]).lrs
    np.testing.assert_allclose(lrs[:3], [0.005, 0.01, 0.01], rtol=1e-6)  # warm-up, then peak
    assert np.all(np.diff(lrs[2:]) < 0)  # cosine decay every step, not every epoch
    assert 0.01 * 0.01 <= lrs[-1] < 0.01 * 0.1  # towards min_lr_ratio x lr


def test_scheduler_none_keeps_the_lr(tmp_path, data_dir):
    lrs = _train_steps(tmp_path, data_dir, ["scheduler=none", "optimizer.lr=0.01"],
                       epochs=1, batches=3).lrs
    assert lrs == [0.01] * 3


def test_gradient_clip_val_bounds_the_applied_gradient_norm(tmp_path, data_dir):
    common = ["scheduler=none", "optimizer=sgd", "optimizer.lr=0.01"]
    clipped = _train_steps(tmp_path, data_dir, [*common, "trainer.gradient_clip_val=0.001"],
                           epochs=1, batches=2).grad_norms
    free = _train_steps(tmp_path, data_dir, common, epochs=1, batches=2).grad_norms
    assert min(free) > 0.01  # without clipping the norms are far above the bound...
    assert max(clipped) <= 0.001 * (1 + 1e-4)  # ...with it, never above it (float rounding)


def test_early_stopping_stops_after_patience_epochs_without_improvement(tmp_path, data_dir):
    def epochs(*overrides) -> int:
        # min_delta=2: accuracy can never improve by 2, so only epoch 0 counts as an improvement
        cfg = _cfg(tmp_path / str(len(overrides)) / "_".join(overrides)[-40:], data_dir, [
            "data.image_size=8", "data.batch_size=8",
            "trainer.max_epochs=4", "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=2", "test=false", "+callbacks.early_stopping.min_delta=2",
            *overrides])
        metrics = fit_and_test(cfg)
        assert "test/acc" not in metrics  # test=false: no test after fitting
        return metrics["epochs"]

    assert epochs("callbacks.early_stopping.patience=1") == 4  # not enabled: runs every epoch
    assert epochs("callbacks.early_stopping.enabled=true", "callbacks.early_stopping.patience=1") == 2
    assert epochs("callbacks.early_stopping.enabled=true", "callbacks.early_stopping.patience=2") == 3


# -- model switches ---------------------------------------------------------------------------
def test_channels_last_changes_the_backbones_input_memory_format(tmp_path, data_dir):
    def formats(*overrides):
        torch.manual_seed(0)
        model = _model(tmp_path, data_dir, list(overrides)).eval()
        conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == bool(overrides)
        seen = []
        model.backbone.register_forward_pre_hook(
            lambda mod, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
        with torch.no_grad():
            out = model(_images())
        return seen, out

    (plain,), out_plain = formats()
    (last,), out_last = formats("model.channels_last=true")
    assert (plain, last) == (False, True)
    torch.testing.assert_close(out_plain, out_last)  # same numbers, other layout


def test_compile_compiles_the_backbone(tmp_path, data_dir):
    assert _model(tmp_path, data_dir, [])._compiled_call_impl is None
    assert _model(tmp_path, data_dir, []).backbone._compiled_call_impl is None
    assert _model(tmp_path, data_dir, ["model.compile=true"]).backbone._compiled_call_impl


@pytest.mark.parametrize("choice,architecture", [
    ("resnet50", "resnet50"), ("efficientnet_b0", "efficientnet_b0"),
    ("timm model.backbone.name=resnet18", "resnet18")])
def test_backbone_choice_builds_that_network(tmp_path, data_dir, choice, architecture):
    cfg = train_config([f"model/backbone={choice.split()[0]}", *choice.split()[1:]],
                       tmp_path, data_dir)
    model = build_model(cfg, CLASSES, np.arange(len(CLASSES)))
    assert model.backbone.model.pretrained_cfg["architecture"] == architecture


# -- losses -----------------------------------------------------------------------------------
def _logits_and_labels():
    logits = torch.randn(8, len(CLASSES), generator=torch.Generator().manual_seed(1)) * 3
    return logits, torch.tensor([0, 0, 0, 0, 0, 1, 2, 3])


def test_label_smoothing_reaches_the_loss(tmp_path, data_dir):
    logits, y = _logits_and_labels()
    plain = _model(tmp_path, data_dir, []).loss_fn(logits, y)
    smooth = _model(tmp_path, data_dir, ["model.loss.label_smoothing=0.1"]).loss_fn(logits, y)
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(logits, y))
    torch.testing.assert_close(smooth, torch.nn.functional.cross_entropy(logits, y,
                                                                         label_smoothing=0.1))
    assert not torch.isclose(plain, smooth)


def test_balanced_class_weights_weigh_the_loss_by_the_train_split(tmp_path, data_dir):
    labels = np.array([0] * 12 + [1] * 4 + [2] * 2 + [3] * 2)
    logits, y = _logits_and_labels()
    plain = _model(tmp_path, data_dir, [], labels).loss_fn
    balanced = _model(tmp_path, data_dir, ["model.loss.class_weights=balanced"], labels).loss_fn
    assert plain.weight is None
    expected = compute_class_weight("balanced", classes=np.arange(4), y=labels)
    np.testing.assert_allclose(balanced.weight.numpy(), expected, rtol=1e-6)
    assert not torch.isclose(plain(logits, y), balanced(logits, y))


def _embeddings():
    g = torch.Generator().manual_seed(2)
    emb = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=1)
    return emb, torch.arange(4).repeat_interleave(4)


def _metric_loss(tmp_path, data_dir, loss, *overrides) -> float:
    model = _model(tmp_path, data_dir, ["model/head=embedding", f"model/loss={loss}",
                                        "model.head.dim=8", *overrides])
    return model.loss_fn(*_embeddings()).item()


@pytest.mark.parametrize("loss,option,values", [
    ("hard_triplet", "margin", (0.2, 0.6)),
    ("hard_triplet", "soft_margin", ("false", "true")),
    ("triplet", "margin", (0.2, 0.6)),
    ("triplet", "mining", ("all", "semihard")),
    ("ce_triplet", "weight", (0.0, 1.0)),
    ("ce_triplet", "scale", (4.0, 16.0)),
])
def test_metric_loss_options_change_the_loss(tmp_path, data_dir, loss, option, values):
    one, two = (_metric_loss(tmp_path, data_dir, loss, f"model.loss.{option}={v}")
                for v in values)
    assert one != pytest.approx(two, rel=1e-4)


def test_soft_margin_is_softplus_of_the_hardest_pair_gap(tmp_path, data_dir):
    emb, labels = _embeddings()
    value = _metric_loss(tmp_path, data_dir, "hard_triplet", "model.loss.soft_margin=true")
    d = torch.cdist(emb, emb)
    same = labels[:, None] == labels[None]
    hardest_pos = torch.where(same, d, torch.zeros_like(d)).amax(dim=1)
    hardest_neg = torch.where(same, torch.full_like(d, 9.0), d).amin(dim=1)
    expected = torch.nn.functional.softplus(hardest_pos - hardest_neg).mean().item()
    assert value == pytest.approx(expected, rel=1e-4)


def test_ce_triplet_weight_zero_is_the_cosine_softmax_alone(tmp_path, data_dir):
    emb, labels = _embeddings()
    model = _model(tmp_path, data_dir, ["model/head=embedding", "model/loss=ce_triplet",
                                        "model.head.dim=8", "model.loss.weight=0",
                                        "model.loss.scale=4"])
    ce = torch.nn.functional.cross_entropy(model.loss_fn.logits(emb), labels)
    assert model.loss_fn(emb, labels).item() == pytest.approx(ce.item(), rel=1e-5)
    cosine = torch.nn.functional.normalize(model.loss_fn.classifier.weight, dim=1)
    torch.testing.assert_close(model.loss_fn.logits(emb), 4 * emb @ cosine.T)


# -- embedding head ---------------------------------------------------------------------------
def test_head_dim_and_batch_norm_shape_the_embedding(tmp_path, data_dir):
    def head(*overrides):
        return _model(tmp_path, data_dir, ["model/head=embedding", "model/loss=hard_triplet",
                                           *overrides])

    out = head("model.head.dim=24").eval()(_images())
    assert out.shape == (4, 24)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))
    bn = torch.nn.BatchNorm1d
    assert any(isinstance(m, bn) for m in head("model.head.batch_norm=true").head.modules())
    assert not any(isinstance(m, bn) for m in head("model.head.batch_norm=false").head.modules())


def test_knn_k_and_weighting_change_the_vote(tmp_path, data_dir):
    def vote(*overrides) -> list[float]:
        model = _model(tmp_path, data_dir, ["model/head=embedding", "model/loss=hard_triplet",
                                            "model.head.dim=2", *overrides])
        # one class-0 image right next to the query, two class-1 images further away
        model.gallery_embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]])
        model.gallery_labels = torch.tensor([0, 1, 1])
        query = torch.tensor([[0.995, 0.0998]])
        return model.knn_proba(query)[0, :2].tolist()

    assert vote("model.head.knn_k=1")[0] == pytest.approx(1.0)
    unweighted = vote("model.head.knn_k=3", "model.head.knn_weighted=false")
    assert unweighted == pytest.approx([1 / 3, 2 / 3], abs=1e-6)
    weighted = vote("model.head.knn_k=3", "model.head.knn_weighted=true")
    assert weighted[0] > 0.5  # the close neighbour outweighs the two far ones
