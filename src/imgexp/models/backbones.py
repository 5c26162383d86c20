"""Backbones: a configurable conv stack (the seeds' Keras CNNs) and any timm model.

Every backbone maps a normalised NCHW float batch to (N, num_features) pooled features.
"""

import logging
from pathlib import Path

import timm
import torch
from timm.models import group_parameters
from torch import nn

from imgexp.errors import ImgexpError

log = logging.getLogger(__name__)

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "elu": nn.ELU,
               "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU}
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def _choice(table: dict, key: str, what: str):
    if key not in table:
        raise ImgexpError(f"{what}={key!r} is not an option: use one of {sorted(table)}")
    return table[key]


class SimpleCNN(nn.Module):
    """Conv(k x k) + activation + pool per entry of `channels`, then flatten -> dense -> dropout.

    Keras-style (flatten, not global pooling), so the dense layer's size depends on
    `image_size`, which the config ties to data.image_size.
    """

    def __init__(self, channels=(16, 32, 64), kernel_size: int = 3, pool: str = "max",
                 activation: str = "relu", dense_units: int = 128, dropout: float = 0.5,
                 batch_norm: bool = False, image_size: int = 64, in_chans: int = 3):
        super().__init__()
        act, pool_cls = _choice(ACTIVATIONS, activation, "activation"), _choice(POOLS, pool, "pool")
        layers, c_in, side = [], in_chans, image_size
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2)]
            layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
            layers += [act(), pool_cls(2)]
            c_in, side = c_out, side // 2
        if side < 1:
            raise ImgexpError(f"simple_cnn: image_size={image_size} is too small for "
                              f"{len(channels)} pooling stages; raise data.image_size")
        self.features = nn.Sequential(*layers)
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, dense_units), act(),
                                  nn.Dropout(dropout))
        self.num_features = dense_units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.features(x))

    def param_stages(self) -> list[list[str]]:
        """Parameter names by stage, input to top: one stage per conv block, then the neck
        (what progressive unfreezing thaws group by group)."""
        stages: list[list[str]] = []
        for name, layer in self.features.named_children():
            if isinstance(layer, nn.Conv2d):
                stages.append([])
            stages[-1] += [f"features.{name}.{p}" for p, _ in layer.named_parameters()]
        stages.append([f"neck.{p}" for p, _ in self.neck.named_parameters()])
        return stages


class TimmBackbone(nn.Module):
    """Any timm model without its classifier (num_classes=0 gives pooled features).

    pretrained=true uses timm's normal loading (Hugging Face hub); checkpoint_path= loads local
    weights through the same path (pretrained_cfg_overlay), so no network is needed.
    """

    def __init__(self, name: str, pretrained: bool = False, checkpoint_path: str | None = None,
                 drop_rate: float = 0.0, drop_path_rate: float | None = None, in_chans: int = 3):
        super().__init__()
        kwargs = dict(num_classes=0, drop_rate=drop_rate, in_chans=in_chans)
        if drop_path_rate is not None:
            kwargs["drop_path_rate"] = drop_path_rate
        if checkpoint_path:
            if not Path(checkpoint_path).is_file():
                raise ImgexpError(f"model.backbone.checkpoint_path={checkpoint_path} not found")
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(checkpoint_path)})
        else:
            kwargs["pretrained"] = pretrained
        if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
            raise ImgexpError(f"model.backbone.name={name!r} is not a timm model "
                              "(see timm.list_models())")
        try:
            self.model = timm.create_model(name, **kwargs)
        except Exception as exc:
            if kwargs.get("pretrained") and not checkpoint_path:
                raise ImgexpError(
                    f"cannot load pretrained weights for {name} ({type(exc).__name__}); "
                    "offline? pass model.backbone.checkpoint_path=/path/to/weights "
                    "or set model.backbone.pretrained=false") from None
            raise ImgexpError(f"cannot build backbone {name}: {exc}") from None
        self.num_features = self.model.num_features
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def group_matcher(self):
        """timm's stage grouping (used for progressive unfreezing)."""
        return self.model.group_matcher()

    def param_stages(self) -> list[list[str]]:
        """Parameter names by stage, input to top, from timm's coarse group_matcher()
        (stem, one group per block stage, the final conv/norm with the last stage)."""
        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        return [[f"model.{name}" for name in names] for _, names in sorted(groups.items())]
