"""Layer activations through forward hooks: which layers to read by default, and reading them.

Spatial maps (N, C, H, W) are global-average-pooled to (N, C), so every layer gives one
vector per image whatever its resolution (the seed read Keras layer outputs the same way).
"""

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from imgexp.errors import ImgexpError
from imgexp.models.backbones import SimpleCNN, TimmBackbone


def block_outputs(backbone: nn.Module) -> list[str]:
    """Module names (relative to the backbone) whose outputs end each stage/block."""
    if isinstance(backbone, SimpleCNN):
        # each conv block ends with its pooling layer; the neck is the dense layer
        pools = [f"features.{i}" for i, m in enumerate(backbone.features)
                 if isinstance(m, nn.MaxPool2d | nn.AvgPool2d)]
        return [*pools, "neck"]
    if isinstance(backbone, TimmBackbone):
        return [f"model.{info['module']}" for info in backbone.model.feature_info]
    raise ImgexpError(f"no default layers for a {type(backbone).__name__} backbone: name them "
                      "with explain.layers=[...] (see explain.list_layers=true)")


def default_layers(model: nn.Module) -> list[str]:
    """Each backbone stage, then the head (logits or embedding)."""
    return [f"backbone.{name}" for name in block_outputs(model.backbone)] + ["head"]


def spatial_layer(model: nn.Module) -> str:
    """The deepest default layer with a spatial map: Grad-CAM's target."""
    blocks = block_outputs(model.backbone)
    spatial = [b for b in blocks if b != "neck"]
    return f"backbone.{spatial[-1]}"


def list_layers(model: nn.Module) -> list[tuple[str, str, bool]]:
    """(name, module type, is default) for every backbone/head module a hook can read."""
    defaults = set(default_layers(model))
    return [(name, type(module).__name__, name in defaults)
            for name, module in model.named_modules()
            if name.split(".")[0] in ("backbone", "head")]


def check_layers(model: nn.Module, layers: Iterable[str]) -> list[str]:
    names = dict(model.named_modules())
    layers = list(layers)
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise ImgexpError(f"explain.layers: no module named {unknown} in this model; "
                          "imgexp-explain ckpt_path=... explain.list_layers=true lists them")
    if not layers:
        raise ImgexpError("explain.layers is empty: leave it null for the defaults")
    return layers


def _pooled(output) -> torch.Tensor:
    if isinstance(output, tuple | list):
        output = output[0]
    output = output.detach().float()
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    if output.ndim == 3:  # token sequences (ViT-like): average over tokens
        return output.mean(dim=1)
    return output.flatten(1)


@torch.inference_mode()
def collect(model: nn.Module, batches: Iterable[torch.Tensor], layers: list[str]
            ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Pooled activations per layer and class probabilities, in one pass over the batches."""
    captured: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda _m, _i, out, name=name: captured[name].append(_pooled(out).cpu().numpy()))
        for name in layers]
    probs = []
    device = next(model.parameters()).device
    try:
        for batch in batches:
            probs.append(model.predict_proba(batch.to(device)).float().cpu().numpy())
    finally:
        for hook in hooks:
            hook.remove()
    activations = {name: np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
                   for name, chunks in captured.items()}
    n = sum(len(p) for p in probs)
    for name, values in activations.items():
        if len(values) != n:
            raise ImgexpError(f"layer {name} ran {len(values)} times for {n} images (a module "
                              "reused in the forward pass): pick another with explain.layers")
    return activations, np.concatenate(probs) if probs else np.zeros((0, 0))
