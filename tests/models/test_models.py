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


# -- model.backbone.checkpoint_path: the formats users have, or a one-line error -------------

def _assert_same_weights(net: TimmBackbone, state_dict: dict) -> None:
    loaded = net.model.state_dict()
    assert [k for k in loaded if not torch.equal(loaded[k], state_dict[k])] == []


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,                                                        # timm / torchvision
    lambda sd: {f"module.{k}": v for k, v in sd.items()},                 # DataParallel
    lambda sd: {f"model.{k}": v for k, v in sd.items()},                  # a wrapper module
    # an imgexp / Lightning checkpoint of a module holding the backbone (and a head)
    lambda sd: {"state_dict": {**{f"backbone.model.{k}": v for k, v in sd.items()},
                               "head.fc.weight": torch.zeros(3, 512)},
                "imgexp": {"class_names": ["a", "b", "c"]}, "epoch": 3},
], ids=["bare", "module.", "model.", "lightning"])
def test_checkpoint_path_loads_every_weight_whatever_the_wrapping(tmp_path, wrap, caplog):
    source = timm.create_model("resnet18", num_classes=0).state_dict()
    torch.save(wrap(source), tmp_path / "weights.pth")
    with caplog.at_level("INFO", logger="imgexp.models.backbones"):
        net = TimmBackbone("resnet18", checkpoint_path=str(tmp_path / "weights.pth"))
    _assert_same_weights(net, source)
    weights = sum(not k.endswith("num_batches_tracked") for k in source)
    assert f"loaded {weights}/{weights} resnet18 tensors" in caplog.text


def test_checkpoint_path_loads_a_torchvision_resnet(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    source = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(source, tmp_path / "resnet50_tv.pth")
    net = TimmBackbone("resnet50", checkpoint_path=str(tmp_path / "resnet50_tv.pth"))
    _assert_same_weights(net, source)  # timm's resnet keeps torchvision's names


def test_checkpoint_path_whose_keys_do_not_match_is_a_one_line_error(tmp_path):
    # timm has no mapping from torchvision's efficientnet names (features.0.0.weight, ...)
    torchvision = pytest.importorskip("torchvision")
    torch.save(torchvision.models.efficientnet_b0(weights=None).state_dict(), tmp_path / "tv.pth")
    with pytest.raises(ImgexpError) as err:
        TimmBackbone("efficientnet_b0", checkpoint_path=str(tmp_path / "tv.pth"))
    message = str(err.value)
    assert "\n" not in message and "checkpoint_path=" in message
    assert "only 0 of " in message and "missing conv_stem.weight" in message


# -- pretrained=true offline: no download retries --------------------------------------------

def test_pretrained_with_the_hub_unreachable_never_enters_the_download_retries(monkeypatch):
    import httpx2
    import huggingface_hub.constants
    import huggingface_hub.file_download as hf_download

    def unreachable(*_args, **_kwargs):
        raise httpx2.ConnectError("Name or service not known")

    offline_at_each_request = []
    monkeypatch.setattr("huggingface_hub.utils.get_session",
                        lambda: type("S", (), {"head": staticmethod(unreachable)})())
    # the hub request that huggingface_hub retries with time-outs and back-off when the
    # network is down; in offline mode it fails at once (the cache is looked up instead)
    monkeypatch.setattr(hf_download, "get_hf_file_metadata", lambda *a, **k: (
        offline_at_each_request.append(huggingface_hub.constants.is_offline_mode())
        or unreachable()))
    with pytest.raises(ImgexpError, match="offline.*checkpoint_path.*pretrained=false"):
        TimmBackbone("resnet18", pretrained=True)
    assert offline_at_each_request and all(offline_at_each_request)


def test_pretrained_with_the_hub_unreachable_loads_from_the_local_cache(monkeypatch, tmp_path):
    import httpx2
    import huggingface_hub.constants
    from safetensors.torch import save_file

    def unreachable(*_args, **_kwargs):
        raise httpx2.ConnectError("Name or service not known")

    monkeypatch.setattr("huggingface_hub.utils.get_session",
                        lambda: type("S", (), {"head": staticmethod(unreachable)})())
    # resnet18's default weights as a previous online run leaves them in the HF cache
    repo = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    snapshot = tmp_path / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    source = timm.create_model("resnet18").state_dict()
    save_file({k: v.contiguous() for k, v in source.items()}, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    net = TimmBackbone("resnet18", pretrained=True)
    assert torch.equal(net.model.conv1.weight, source["conv1.weight"])


# -- the seeds' networks ---------------------------------------------------------------------

@pytest.mark.parametrize("experiment,layers,feature_shape,params", [
    # seed 003 create_model(use_dropout=True), Keras at 128x128x3, padding 'same', one pool:
    # conv 16: 3*3*3*16+16 = 448; conv 32: 3*3*16*32+32 = 4,640; conv 64: 3*3*32*64+64 = 18,496;
    # flatten 64*64*64 = 262,144 -> dense 128: 262,144*128+128 = 33,554,560; total 33,578,144
    ("tounum_cnn", ["Conv2d", "ReLU", "MaxPool2d", "Dropout", "Conv2d", "ReLU",
                    "Conv2d", "ReLU", "Dropout"], (64, 64, 64), 33_578_144),
    # seed 002 at 120x120x3, conv 5x5 + ReLU + max-pool x4, the first 'same', the rest 'valid':
    # 120 -> pool 60 -> conv 56 -> 28 -> 24 -> 12 -> 8 -> 4; conv 16: 5*5*3*16+16 = 1,216;
    # conv 32: 5*5*16*32+32 = 12,832; conv 64: 5*5*32*64+64 = 51,264;
    # conv 128: 5*5*64*128+128 = 204,928; dense 128: 128*4*4*128+128 = 262,272; total 532,512
    ("corel_cnn", ["Conv2d", "ReLU", "MaxPool2d"] * 4, (128, 4, 4), 532_512),
])
def test_seed_presets_are_the_seeds_keras_networks(tmp_path, experiment, layers, feature_shape,
                                                   params):
    from hydra.utils import instantiate

    from helpers.config import compose_config

    cfg = compose_config("train", [f"experiment={experiment}"], tmp_path)
    net = instantiate(cfg.model.backbone)
    size = cfg.data.image_size
    assert [type(m).__name__ for m in net.features] == layers
    assert net.features(torch.zeros(1, 3, size, size)).shape[1:] == feature_shape
    assert sum(p.numel() for p in net.parameters()) == params
    # the neck: flatten -> dense 128 -> ReLU -> dropout, then the head's dense(num_classes)
    assert [type(m).__name__ for m in net.neck] == ["Flatten", "Linear", "ReLU", "Dropout"]


def test_simple_cnn_per_block_settings_must_give_one_value_per_block():
    with pytest.raises(ImgexpError, match="pool_after has 2 values for 3 conv blocks"):
        SimpleCNN(channels=[8, 8, 8], pool_after=[True, False], image_size=16)
    with pytest.raises(ImgexpError, match="padding='full'"):
        SimpleCNN(channels=[8], padding="full", image_size=16)


# -- mixup: the loss's class weights and label smoothing apply to mixed targets --------------

def _mixup_loss(loss: CrossEntropyLoss) -> float:
    from timm.data import Mixup

    from imgexp.models.module import ImageClassifier

    torch.manual_seed(0)
    backbone = SimpleCNN(channels=[4], dense_units=8, image_size=8, dropout=0.0)
    model = ImageClassifier(backbone, SoftmaxHead(in_features=8, num_classes=3), loss,
                            class_names=["a", "b", "c"],
                            mixup=Mixup(mixup_alpha=0.4, num_classes=3, label_smoothing=0.0))
    batch = {"image": torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8),
             "label": torch.tensor([0, 1, 2, 0])}
    np.random.seed(0)  # timm draws the mixing ratio from numpy
    return model.training_step(batch, 0).item()


def test_mixup_loss_uses_label_smoothing_and_class_weights():
    plain = _mixup_loss(CrossEntropyLoss())
    assert _mixup_loss(CrossEntropyLoss()) == pytest.approx(plain, abs=1e-6)  # deterministic
    assert abs(_mixup_loss(CrossEntropyLoss(label_smoothing=0.3)) - plain) > 1e-3
    assert abs(_mixup_loss(CrossEntropyLoss(class_weights=[5.0, 1.0, 1.0], num_classes=3))
               - plain) > 1e-3


@pytest.mark.parametrize("kwargs", [{}, dict(label_smoothing=0.2),
                                    dict(class_weights=[3.0, 1.0, 0.5], num_classes=3),
                                    dict(class_weights=[3.0, 1.0, 0.5], num_classes=3,
                                         label_smoothing=0.2)])
def test_soft_targets_are_normalised_as_hard_labels_are(kwargs):
    # one-hot soft targets must give nn.CrossEntropyLoss's (weighted-mean) value for the labels
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    loss = CrossEntropyLoss(**kwargs)
    one_hot = torch.nn.functional.one_hot(y, 3).float()
    assert loss(logits, one_hot).item() == pytest.approx(loss(logits, y).item(), abs=1e-6)
