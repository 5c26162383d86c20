"""model.backbone.checkpoint_path on every backbone: a new run starts from a run's weights; a
file that does not fit, or holds no tensors, stops in one line (never at the hub)."""

import pytest
import torch

from helpers.config import train_config
from imgexp.errors import ImgexpError
from imgexp.models import build_model, load_model
from imgexp.models.backbones import SimpleCNN, TimmBackbone

BACKBONES = ["simple_cnn", "simple_cnn_corel", "simple_cnn_tounum", "descriptors", "resnet50",
             "efficientnet_b0", "timm"]
DIGITS_CNN = ["data.image_size=16", "model.backbone.channels=[16,32]"]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_config_has_the_key_unset_by_default(backbone, tmp_path, data_dir):
    cfg = train_config([f"model/backbone={backbone}", "model.backbone.name=resnet18"
                        if backbone == "timm" else "seed=0"], tmp_path, data_dir)
    assert cfg.model.backbone.checkpoint_path is None


def test_a_simple_cnn_started_from_a_run_has_its_backbone_weights(tmp_path, data_dir,
                                                                  digits_ckpt):
    cfg = train_config([*DIGITS_CNN, f"model.backbone.checkpoint_path={digits_ckpt}"], tmp_path,
                       data_dir)
    model = build_model(cfg, [str(d) for d in range(10)])
    saved = torch.load(digits_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    loaded = model.backbone.state_dict()
    assert loaded and all(torch.equal(v, saved[f"backbone.{k}"]) for k, v in loaded.items())
    fresh = build_model(train_config(DIGITS_CNN, tmp_path, data_dir), [str(d) for d in range(10)])
    assert not torch.equal(fresh.backbone.neck[1].weight, model.backbone.neck[1].weight)


def test_a_simple_cnn_checkpoint_of_another_shape_is_one_line(digits_ckpt):
    with pytest.raises(ImgexpError) as error:
        SimpleCNN(channels=[8, 16], image_size=16, checkpoint_path=str(digits_ckpt))
    message = str(error.value)
    assert "\n" not in message and "does not fit this simple_cnn" in message
    assert "features.0.weight: (8, 3, 3, 3) here, (16, 3, 3, 3) in the file" in message


def test_descriptors_take_the_key_but_have_no_weights_to_load(tmp_path, data_dir, digits_ckpt):
    cfg = train_config(["model/backbone=descriptors", "model/head=knn",
                        f"model.backbone.checkpoint_path={digits_ckpt}"], tmp_path, data_dir)
    with pytest.raises(ImgexpError, match="descriptors have no weights to load"):
        build_model(cfg, ["a", "b"])


def test_a_checkpoint_never_reads_the_weights_its_run_started_from(tmp_path, digits_ckpt):
    """The run's config names the file it started from; its own weights are in the checkpoint,
    so eval/predict/export work after that file is gone (and checkpoints from before the key
    existed, without it, still load)."""
    ckpt = torch.load(digits_ckpt, map_location="cpu", weights_only=True)
    for name, value in (("moved", "/gone/best.ckpt"), ("older", None)):
        backbone = ckpt["imgexp"]["config"]["model"]["backbone"]
        backbone.pop("checkpoint_path", None)
        if value:
            backbone["checkpoint_path"] = value
        torch.save(ckpt, tmp_path / f"{name}.ckpt")
        assert load_model(tmp_path / f"{name}.ckpt").class_names == [str(d) for d in range(10)]


# -- a weights file without tensors: one line, never the hub's download retries ---------------

@pytest.fixture
def hub_calls(monkeypatch) -> list:
    """Every way timm reaches for the network, recorded (and failing as offline would)."""
    from timm.models import _builder

    calls = []

    def download(*args, **_kwargs):
        calls.append(args)
        raise OSError("no network")

    for name in ("load_state_dict_from_hf", "load_state_dict_from_url", "download_cached_file"):
        monkeypatch.setattr(_builder, name, download)
    monkeypatch.setattr("huggingface_hub.file_download.get_hf_file_metadata", download)
    return calls


@pytest.mark.parametrize("content", [{}, {"state_dict": {}}, {"epoch": 3, "global_step": 10}],
                         ids=["empty", "empty state_dict", "no tensors"])
@pytest.mark.parametrize("backbone", ["timm", "simple_cnn"])
def test_a_weights_file_without_tensors_is_one_line_without_the_hub(tmp_path, hub_calls,
                                                                    content, backbone):
    torch.save(content, tmp_path / "weights.pth")
    path = str(tmp_path / "weights.pth")
    with pytest.raises(ImgexpError) as error:
        if backbone == "timm":
            TimmBackbone("resnet18", checkpoint_path=path)
        else:
            SimpleCNN(image_size=16, checkpoint_path=path)
    assert str(error.value).startswith(f"model.backbone.checkpoint_path={path} holds no tensors")
    assert "\n" not in str(error.value) and hub_calls == []
