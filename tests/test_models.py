"""Shapes and gradients of every backbone / head / loss, and model construction errors."""

import numpy as np
import pytest
import timm
import torch

from imgexp.errors import ImgexpError
from imgexp.models.backbones import SimpleCNN, TimmBackbone
from imgexp.models.heads import SoftmaxHead
from imgexp.models.losses import CrossEntropyLoss, resolve_class_weights


def _grads_flow(module: torch.nn.Module, out: torch.Tensor) -> bool:
    out.float().pow(2).mean().backward()
    return all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("kwargs,size", [
    (dict(channels=[16, 32, 64, 128], kernel_size=5, dropout=0.25), 120),   # corel preset
    (dict(channels=[16, 32, 64], kernel_size=3, dropout=0.5), 128),         # tounum preset
    (dict(channels=[8, 16], pool="avg", activation="tanh", batch_norm=True), 32),
])
def test_simple_cnn_shapes_and_gradients(kwargs, size):
    net = SimpleCNN(image_size=size, dense_units=64, **kwargs)
    out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 64) and net.num_features == 64
    assert _grads_flow(net, out)


def test_simple_cnn_rejects_too_small_images_and_unknown_activation():
    with pytest.raises(ImgexpError, match="too small"):
        SimpleCNN(channels=[8, 8, 8, 8, 8], image_size=16)
    with pytest.raises(ImgexpError, match="activation='swish2'"):
        SimpleCNN(activation="swish2")


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0"])
def test_timm_backbones_give_pooled_features_with_gradients(name):
    net = TimmBackbone(name, pretrained=False)
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, net.num_features) and net.num_features in (2048, 1280)
    assert _grads_flow(net, out)
    assert net.group_matcher()  # stages exist for progressive unfreezing


def test_timm_checkpoint_path_loads_local_weights(tmp_path):
    source = timm.create_model("resnet18", num_classes=10)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    net = TimmBackbone("resnet18", checkpoint_path=str(tmp_path / "weights.pth"))
    assert torch.equal(net.model.conv1.weight, source.conv1.weight)


def test_pretrained_offline_error_says_what_to_do(monkeypatch):
    import huggingface_hub.constants

    # as on a machine without network, minus the connection time-outs
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ImgexpError, match="checkpoint_path.*pretrained=false"):
        TimmBackbone("resnet18", pretrained=True)


def test_unknown_timm_name_is_a_clear_error():
    with pytest.raises(ImgexpError, match="not a timm model"):
        TimmBackbone("resnet_does_not_exist")


def test_softmax_head_and_cross_entropy_with_balanced_weights():
    head = SoftmaxHead(in_features=8, num_classes=3, dropout=0.1)
    logits = head(torch.randn(4, 8))
    assert logits.shape == (4, 3)
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    loss = CrossEntropyLoss(class_weights="balanced", train_labels=labels, num_classes=3)
    # sklearn 'balanced': n / (k * count)
    assert torch.allclose(loss.weight, torch.tensor([10 / 18, 10 / 9, 10 / 3]))
    value = loss(logits, torch.tensor([0, 1, 2, 0]))
    assert value.ndim == 0 and torch.isfinite(value)
    assert _grads_flow(head, value)


def test_class_weights_list_must_match_classes():
    with pytest.raises(ImgexpError, match="2 values for 3 classes"):
        resolve_class_weights([1.0, 2.0], np.array([0, 1, 2]), 3)


def test_label_smoothing_changes_the_loss():
    logits, y = torch.tensor([[4.0, 0.0]]), torch.tensor([0])
    assert CrossEntropyLoss(label_smoothing=0.2)(logits, y) > CrossEntropyLoss()(logits, y)
