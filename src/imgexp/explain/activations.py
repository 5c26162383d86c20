"""Layer activations through forward hooks: which layers to read by default, and reading them.

Spatial maps (N, C, H, W) are global-average-pooled to (N, C), so every layer gives one
vector per image whatever its resolution (the seed read Keras layer outputs the same way).
"""

import logging
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from imgexp.device import Inference
from imgexp.errors import ImgexpError
from imgexp.models.backbones import SimpleCNN, TimmBackbone

log = logging.getLogger(__name__)


def block_outputs(backbone: nn.Module) -> list[str]:
    """Module names (relative to the backbone) whose outputs end each stage/block."""
    if isinstance(backbone, SimpleCNN):
        return [*backbone.block_outputs(), "neck"]  # the neck is the dense layer
    if isinstance(backbone, TimmBackbone):
        return [f"model.{info['module']}" for info in backbone.model.feature_info]
    raise ImgexpError(f"no default layers for a {type(backbone).__name__} backbone: name them "
                      "with explain.layers=[...] (see explain.list_layers=true)")


def has_gradients(model: nn.Module) -> bool:
    """False for a backbone computed outside autograd (hand-made descriptors)."""
    return getattr(model.backbone, "differentiable", True)


def model_device(model: nn.Module) -> torch.device:
    """Where the model runs: a descriptor model has buffers but no parameters."""
    tensor = next(iter([*model.parameters(), *model.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def default_layers(model: nn.Module) -> list[str]:
    """Each backbone stage, then the head (logits or embedding); for descriptors, which have
    no stages, the fused descriptor vector, then the L2-normalised one the k-NN vote compares."""
    if not has_gradients(model):
        return ["backbone", "head"]
    return [f"backbone.{name}" for name in block_outputs(model.backbone)] + ["head"]


def map_sizes(model: nn.Module, layers: list[str], image_size: tuple[int, int]
              ) -> dict[str, tuple[int, ...]]:
    """Each layer's output size beyond batch and channels ((H, W) for a spatial map), from
    one blank image of `image_size` through the model."""
    sizes: dict[str, tuple[int, ...]] = {}

    def record(name: str, output) -> None:
        sizes[name] = tuple((output[0] if isinstance(output, tuple | list) else output).shape[2:])

    hooks = [model.get_submodule(name).register_forward_hook(
        lambda _m, _i, out, name=name: record(name, out)) for name in layers]
    device = model_device(model)
    try:
        with torch.inference_mode():
            model(torch.zeros((1, 3, *image_size), dtype=torch.uint8, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def _is_flat(size: tuple[int, ...]) -> bool:
    """A 1x1 map (or none): Grad-CAM's upsampled heat is then one value, float noise once
    scaled to [0, 1]."""
    return len(size) != 2 or size[0] * size[1] <= 1


def grad_cam_layer(model: nn.Module, requested: str | None,
                   image_size: tuple[int, int]) -> str | None:
    """Grad-CAM's target: `requested`, or the deepest backbone block whose map is larger than
    1x1 at this image size (resnet18's last stage is 1x1 at 32 px); a warning when the
    layer's map is 1x1 anyway. None (no Grad-CAM) for a model without gradients; asking for
    a layer there is an error."""
    if not has_gradients(model):
        if requested:
            raise ImgexpError(f"explain.attribution.layer={requested}: Grad-CAM needs "
                              f"gradients and a {type(model.backbone).__name__} backbone has "
                              "none; leave it null (LIME still explains each image)")
        log.info("no Grad-CAM: a %s backbone has no gradients; LIME explains each image",
                 type(model.backbone).__name__)
        return None
    if requested:
        layer = check_layers(model, [requested])[0]
        size = map_sizes(model, [layer], image_size).get(layer, ())
    else:
        blocks = [f"backbone.{b}" for b in block_outputs(model.backbone) if b != "neck"]
        sizes = map_sizes(model, blocks, image_size)
        larger = [b for b in blocks if not _is_flat(sizes.get(b, ()))]
        layer = larger[-1] if larger else blocks[-1]
        size = sizes.get(layer, ())
    if _is_flat(size):
        log.warning("Grad-CAM at %s: its output is %s at %dx%d px, not a spatial map larger "
                    "than 1x1, so the heat map carries no location; pick an earlier layer with "
                    "explain.attribution.layer=... (explain.list_layers=true lists them) or "
                    "raise the image size", layer, "x".join(map(str, size)) or "not spatial",
                    *image_size)
    return layer


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
def collect(model: nn.Module, batches: Iterable[torch.Tensor], layers: list[str],
            inference: Inference | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Pooled activations per layer and class probabilities, in one pass over the batches
    (fp32 on the model's device unless `inference` says otherwise)."""
    captured: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda _m, _i, out, name=name: captured[name].append(_pooled(out).cpu().numpy()))
        for name in layers]
    probs = []
    inference = inference or Inference(model_device(model))
    try:
        for batch in batches:
            with inference.autocast():
                probs.append(model.predict_proba(inference.inputs(batch)).float().cpu().numpy())
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
